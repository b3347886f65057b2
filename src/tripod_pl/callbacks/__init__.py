"""Lightning callbacks for the evaluation protocol (DESIGN §6): periodic InfoMEC/DCI with TensorBoard figures,
and model selection by InfoM above a PSNR threshold."""

from tripod_pl.callbacks.evaluation import EvaluationCallback
from tripod_pl.callbacks.selection import BestInfoMCheckpoint

__all__ = ["BestInfoMCheckpoint", "EvaluationCallback"]
