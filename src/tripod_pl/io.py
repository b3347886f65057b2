"""Atomic file writes: the one place where tripod_pl writes "to a temporary name, then renames".

Everything the project publishes (converted datasets, checkpoints, evaluation reports) is first written under
a hidden, unique name in the target's own directory and then moved onto the target with ``os.replace``, an
atomic rename on POSIX and Windows. A reader therefore sees the old file or the complete new one, never a
truncated one, and an interrupted write leaves the previous file intact::

    with atomic_path("out/metrics.json") as tmp:
        tmp.write_text(text)          # an exception here removes tmp and keeps out/metrics.json as it was
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "publish", "temporary_path"]


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """A unique hidden name next to ``path`` (same directory, hence same file system: the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Moves the finished file ``tmp`` onto ``path`` in one atomic rename."""
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mkdir: bool = True) -> Iterator[Path]:
    """Yields a temporary path to write; on a clean exit it replaces ``path``, on an exception it is deleted.

    Args:
        path: the file to (re)place.
        mkdir: create ``path``'s directory first when it does not exist.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically, with the permissions of an ordinary new file."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
