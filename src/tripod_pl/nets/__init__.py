"""Networks: the residual encoder and the conditioned residual decoder (DESIGN §2)."""

from tripod_pl.nets.decoder import Decoder
from tripod_pl.nets.encoder import Encoder

__all__ = ["Decoder", "Encoder"]
