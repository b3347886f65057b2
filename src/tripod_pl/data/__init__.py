"""Data: the HDF5 layout and the streaming ``HDF5DataModule`` that trains from it (docs/data.md).

``tripod_pl.data.prepare`` writes dataset files (``tripod-data``: the procedural dataset, converters of the
published benchmarks); its main names are re-exported here. Names are imported when first used, so that
``tripod-data`` and the conversion of images (:mod:`tripod_pl.data.transforms`) do not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tripod_pl.data.datamodule import HDF5DataModule
    from tripod_pl.data.layout import DatasetError, DatasetInfo, read_info
    from tripod_pl.data.prepare import DatasetWriter, generate_procedural, write_batches, write_dataset
    from tripod_pl.data.transforms import as_model_input, to_float_images

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "DatasetWriter",
    "HDF5DataModule",
    "as_model_input",
    "generate_procedural",
    "read_info",
    "to_float_images",
    "write_batches",
    "write_dataset",
]

_LAZY = {
    "HDF5DataModule": "tripod_pl.data.datamodule",
    "DatasetError": "tripod_pl.data.layout",
    "DatasetInfo": "tripod_pl.data.layout",
    "read_info": "tripod_pl.data.layout",
    "DatasetWriter": "tripod_pl.data.prepare",
    "generate_procedural": "tripod_pl.data.prepare",
    "write_batches": "tripod_pl.data.prepare",
    "write_dataset": "tripod_pl.data.prepare",
    "as_model_input": "tripod_pl.data.transforms",
    "to_float_images": "tripod_pl.data.transforms",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tripod_pl.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
