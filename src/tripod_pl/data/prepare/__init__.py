"""Preparing dataset files (what ``tripod-data`` does): the procedural dataset, the converters of the published
benchmarks, and the atomic writer, all producing the layout of ``tripod_pl.data.layout`` (docs/data.md).

Training never needs this package, except ``generate_procedural`` for ``HDF5DataModule(generate_if_missing=True)``::

    from tripod_pl.data.prepare import convert, generate_procedural
    generate_procedural("toy.h5")
    convert("shapes3d", "3dshapes.h5", "data/shapes3d.h5")
"""

from tripod_pl.data.prepare.converters import PUBLISHED, convert
from tripod_pl.data.prepare.procedural import DEFAULT_FACTORS, generate_procedural
from tripod_pl.data.prepare.writer import DatasetWriter, write_batches, write_dataset

__all__ = [
    "DEFAULT_FACTORS",
    "PUBLISHED",
    "DatasetWriter",
    "convert",
    "generate_procedural",
    "write_batches",
    "write_dataset",
]
