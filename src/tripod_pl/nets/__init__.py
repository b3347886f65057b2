"""Networks: the residual encoder (or the reference's MLP encoder) and the conditioned residual decoder
(docs/architecture.md, "Networks")."""

from tripod_pl.nets.compiled import CompiledCall
from tripod_pl.nets.decoder import Decoder
from tripod_pl.nets.encoder import Encoder, MLPEncoder

__all__ = ["CompiledCall", "Decoder", "Encoder", "MLPEncoder"]
