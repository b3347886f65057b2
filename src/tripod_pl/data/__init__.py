"""Data: the HDF5 layout and the streaming ``HDF5DataModule`` that trains from it (docs/data.md).

``tripod_pl.data.prepare`` writes dataset files (``tripod-data``: the procedural dataset, converters of the
published benchmarks); its main names are re-exported here.
"""

from tripod_pl.data.datamodule import HDF5DataModule
from tripod_pl.data.layout import DatasetError, DatasetInfo, read_info
from tripod_pl.data.prepare import DatasetWriter, generate_procedural, write_batches, write_dataset
from tripod_pl.data.transforms import to_float_images

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "DatasetWriter",
    "HDF5DataModule",
    "generate_procedural",
    "read_info",
    "to_float_images",
    "write_batches",
    "write_dataset",
]
