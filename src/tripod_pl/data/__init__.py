"""Data: the HDF5 layout, the procedural dataset, converters and the streaming DataModule (DESIGN §5)."""

from tripod_pl.data.datamodule import HDF5DataModule
from tripod_pl.data.layout import DatasetError, DatasetInfo, read_info
from tripod_pl.data.procedural import generate_procedural
from tripod_pl.data.transforms import to_float_images
from tripod_pl.data.writer import DatasetWriter, write_batches, write_dataset

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
