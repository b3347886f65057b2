"""Networks: the residual encoder and the conditioned residual decoder (docs/architecture.md, "Networks")."""

from tripod_pl.nets.decoder import Decoder
from tripod_pl.nets.encoder import Encoder

__all__ = ["Decoder", "Encoder"]
