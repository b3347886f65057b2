"""Lightning callbacks for the evaluation protocol (docs/evaluation.md): periodic InfoMEC/DCI with TensorBoard figures,
and model selection by InfoM above a PSNR threshold."""

from tripod_pl.callbacks.evaluation import EvaluationCallback
from tripod_pl.callbacks.selection import BestInfoMCheckpoint

__all__ = ["BestInfoMCheckpoint", "EvaluationCallback"]
