"""The one conversion from tensors to NumPy used across tripod_pl (metrics, reports, figures)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["to_numpy"]


def to_numpy(x: Any, dtype: np.dtype | type | None = None) -> np.ndarray:
    """``x`` as a NumPy array: tensors are detached and copied to the host (bfloat16 as float32), anything
    else goes through ``np.asarray``; ``dtype`` converts the result."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x, dtype=dtype)
