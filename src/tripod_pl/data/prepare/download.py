"""Verified downloads of the published benchmark files (``tripod-data download NAME DIR``).

Each dataset is a list of ``Resource`` (file name, URL, published checksum, size). ``fetch`` downloads one:

- into ``DIR/<filename>.part``; a later call continues that file with an HTTP ``Range`` request (a server
  that ignores ``Range`` and answers 200 restarts it from byte 0); a connection dropped mid-transfer is
  retried a few times from where it stopped;
- then checks the size and the checksum (SHA-256 and/or MD5, whichever was published). A mismatch removes
  the ``.part`` file and raises ``DownloadError`` naming the expected and the actual digest;
- then renames ``.part`` to ``<filename>`` (atomic: a file under the final name is always complete).

A file already present under its final name is verified and not downloaded again. A resource without a
published checksum is accepted unverified (``Fetched.verified`` is False; the CLI prints its SHA-256 so that
it can be recorded). Offline, an unreachable host, or an HTTP error status is one-line ``DownloadError``::

    fetch(Resource("3dshapes.h5", "https://storage.googleapis.com/3d-shapes/3dshapes.h5", sha256=...), "data")

Falcor3D, Isaac3D and MPI3D-complex are served from Google Drive, which interposes a confirmation page on
files this large: ``download`` raises ``ManualDownload`` with the steps instead. Only ``urllib`` is used.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tripod_pl.data.layout import DatasetInfo
from tripod_pl.data.prepare.converters import PUBLISHED, convert

CHUNK = 1 << 20
TIMEOUT_S = 60.0
ATTEMPTS = 3
USER_AGENT = "tripod-data (urllib)"


class DownloadError(OSError):
    """A download that failed: offline, HTTP error, interrupted too often, or a checksum mismatch."""


class ManualDownload(DownloadError):
    """A dataset whose publisher serves it in a way this tool cannot fetch; the message says what to do."""


@dataclass(frozen=True)
class Resource:
    """One published file: where it is served, and its published size and digests (lower-case hex)."""

    filename: str
    url: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None

    @property
    def has_checksum(self) -> bool:
        return bool(self.sha256 or self.md5)


@dataclass(frozen=True)
class Fetched:
    """What ``fetch`` did: the final path, its digests, whether they were checked, bytes transferred."""

    path: Path
    sha256: str
    md5: str
    verified: bool
    downloaded_bytes: int

    def describe(self) -> str:
        """One line: the file, what was transferred, and whether it matched the published checksum."""
        how = f"{self.downloaded_bytes:,} bytes downloaded" if self.downloaded_bytes else "already present"
        if self.verified:
            return f"{self.path}: {how}, checksum verified (SHA-256 {self.sha256})"
        return f"warning: {self.path}: {how}, NOT verified (no published checksum); its SHA-256 is {self.sha256}"


@dataclass(frozen=True)
class Dataset:
    """A downloadable dataset: its files, where their checksums were published, and how to convert them.

    ``converter`` is the ``tripod-data convert`` name (None: none yet); ``convert_src`` the file (or ``"."``,
    the download folder) it reads; ``factor_sizes`` replaces the converter's documented sizes.
    """

    resources: tuple[Resource, ...]
    checksum_source: str
    converter: str | None = None
    convert_src: str = "."
    factor_sizes: tuple[int, ...] | None = None


# ---------------------------------------------------------------------------------------------------------
# Registry. Every digest below was copied from the source named in its comment (none was computed here).

_TFDS = "tensorflow/datasets, tensorflow_datasets/url_checksums/{}.txt (URL, size, SHA-256)"
_NORB = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_MPI3D = "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/"
_MPI3D_SIZES = (6, 6, 2, 3, 3, 40, 40)

DATASETS: dict[str, Dataset] = {
    # 267,573,662 bytes; SHA-256 and size from TFDS url_checksums/shapes3d.txt (disent's full-file MD5
    # 099a2078d58cec4daad0702c55d06868 names the same file).
    "shapes3d": Dataset(
        (
            Resource(
                "3dshapes.h5",
                "https://storage.googleapis.com/3d-shapes/3dshapes.h5",
                sha256="0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
                size=267_573_662,
            ),
        ),
        _TFDS.format("shapes3d"),
        converter="shapes3d",
        convert_src="3dshapes.h5",
    ),
    # The .npz of google-deepmind/dsprites-dataset (commit fa310c6, blob d98996d3…). No SHA-256 is
    # published for it (TFDS lists only the .hdf5); MD5 7da33b31… is the digest the dSprites loaders of
    # several independent projects pin for this URL (e.g. the ones pinned to commit fa310c6).
    "dsprites": Dataset(
        (
            Resource(
                "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                "https://raw.githubusercontent.com/google-deepmind/dsprites-dataset/master/"
                "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                md5="7da33b31b13a06f4b04a70402ce90c2e",
            ),
        ),
        "MD5 pinned by third-party dSprites loaders (no SHA-256 published for the .npz)",
        converter="dsprites",
        convert_src="dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    ),
    # smallNORB, six gzipped files (training and testing: dat, cat, info); sizes and SHA-256 from TFDS
    # url_checksums/smallnorb.txt.
    "smallnorb": Dataset(
        tuple(
            Resource(f"smallnorb-{split}-{part}.mat.gz", f"{_NORB}smallnorb-{split}-{part}.mat.gz", sha256=h, size=n)
            for split, part, n, h in (
                (
                    "5x46789x9x18x6x2x96x96-training",
                    "dat",
                    131_896_188,
                    "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873",
                ),
                (
                    "5x46789x9x18x6x2x96x96-training",
                    "cat",
                    348,
                    "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa",
                ),
                (
                    "5x46789x9x18x6x2x96x96-training",
                    "info",
                    71_052,
                    "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32",
                ),
                (
                    "5x01235x9x18x6x2x96x96-testing",
                    "dat",
                    130_799_817,
                    "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474",
                ),
                (
                    "5x01235x9x18x6x2x96x96-testing",
                    "cat",
                    347,
                    "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff",
                ),
                (
                    "5x01235x9x18x6x2x96x96-testing",
                    "info",
                    10_428,
                    "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2",
                ),
            )
        ),
        _TFDS.format("smallnorb"),
        converter="smallnorb",
    ),
    # Reed et al. (NeurIPS 2015) "Deep Visual Analogy-Making" data; Cars3D is its data/cars folder. Served
    # over plain HTTP; full-file MD5 from nmichlo/disent, disent/dataset/data/_groundtruth__cars3d.py
    # (uri_hash "full"); no SHA-256 or size is published.
    "cars3d": Dataset(
        (
            Resource(
                "nips2015-analogy-data.tar.gz",
                "http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
                md5="4e866a7919c1beedf53964e6f7a23686",
            ),
        ),
        "MD5 from nmichlo/disent (_groundtruth__cars3d.py)",
        converter="cars3d",
        convert_src="nips2015-analogy-data.tar.gz",
    ),
}

# MPI3D toy / realistic / real, 1,036,800 images each, at the links of rr-learning/disentanglement_dataset's
# README (Hugging Face since 2025-04; mpi3d_real was re-uploaded then, "corrected"). No checksum is published
# for these URLs: disent's MD5s (55889cb7…, 59a6225b…, 0f33f609…) are of the 2019 Google Cloud Storage
# copies, which may differ, so they are not enforced. Accepted unverified (the SHA-256 is printed); the
# Hugging Face file page shows its SHA-256 to compare. Converted by the ``mpi3d`` converter with 6x6 sizes.
for _variant in ("toy", "realistic", "real"):
    DATASETS[f"mpi3d_{_variant}"] = Dataset(
        (Resource(f"mpi3d_{_variant}.npz", f"{_MPI3D}mpi3d_{_variant}.npz"),),
        "none published for the Hugging Face copies (accepted unverified)",
        converter="mpi3d",
        convert_src=f"mpi3d_{_variant}.npz",
        factor_sizes=_MPI3D_SIZES,
    )

_DRIVE = "https://drive.google.com/file/d/{}/view"
MANUAL: dict[str, str] = {
    "mpi3d": (
        "mpi3d (MPI3D real-world complex) is served from Google Drive only, which asks for a confirmation on "
        f"files this large: download real3d_complicated_shapes_ordered.npz from "
        f"{_DRIVE.format('1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm')} (link in rr-learning/disentanglement_dataset's "
        "README) into {dir}, then run: tripod-data convert mpi3d {dir}/real3d_complicated_shapes_ordered.npz "
        "{dir}/mpi3d.h5"
    ),
    "falcor3d": (
        "falcor3d is served from Google Drive only (NVlabs/High-res-disentanglement-datasets), which asks for a "
        "confirmation on files this large: download Falcor3D_128x128 (3.7 GB) from "
        f"{_DRIVE.format('1XAQfFK1x6cpN1eiovbP0hVfLTm5SsSoJ')}, unpack it into {{dir}}, then run: "
        "tripod-data convert falcor3d {dir}/Falcor3D_down128 {dir}/falcor3d.h5 --workers 8"
    ),
    "isaac3d": (
        "isaac3d is served from Google Drive only (NVlabs/High-res-disentanglement-datasets), which asks for a "
        "confirmation on files this large: download Isaac3D_128x128 (13 GB) from "
        f"{_DRIVE.format('1OmQ1G2wnm6eTsSFGTKFZZAh5D3nQTW1B')}, unpack it into {{dir}}, then run: "
        "tripod-data convert isaac3d {dir}/Isaac3D_down128 {dir}/isaac3d.h5 --workers 8"
    ),
}

NAMES: tuple[str, ...] = (*DATASETS, *MANUAL)


# ---------------------------------------------------------------------------------------------------------
# One file.


class _Digests:
    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)

    def update(self, block: bytes) -> None:
        self.sha256.update(block)
        self.md5.update(block)


def _hash_file(path: Path, progress: bool) -> tuple[str, str]:
    digests = _Digests()
    size = path.stat().st_size
    with open(path, "rb") as f, _bar(size, 0, f"verifying {path.name}", progress) as bar:
        while block := f.read(CHUNK):
            digests.update(block)
            bar.update(len(block))
    return digests.sha256.hexdigest(), digests.md5.hexdigest()


def _bar(total: int | None, initial: int, desc: str, progress: bool) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=not progress,
        file=sys.stderr,
    )


def _mismatch(resource: Resource, path: Path, sha256: str, md5: str) -> str | None:
    """What differs between the file at ``path`` and the published size / digests, or None."""
    size = path.stat().st_size
    if resource.size is not None and size != resource.size:
        return f"size {size:,} bytes, expected {resource.size:,}"
    if resource.sha256 and sha256 != resource.sha256.lower():
        return f"checksum mismatch: expected SHA-256 {resource.sha256}, got {sha256}"
    if resource.md5 and md5 != resource.md5.lower():
        return f"checksum mismatch: expected MD5 {resource.md5}, got {md5}"
    return None


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            raise _RangeRefused from None
        raise DownloadError(f"{url}: the server answered HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = getattr(e.reason, "strerror", None) or e.reason
        raise DownloadError(f"cannot reach {_host(url)} ({reason}); offline? ({url})") from None
    except TimeoutError:
        raise DownloadError(f"{_host(url)} did not answer within {timeout:g} s ({url})") from None


class _RangeRefused(Exception):
    """HTTP 416: the server will not send from that offset (the .part is not a prefix it knows)."""


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class _Tally:
    received: int = 0


def _transfer(resource: Resource, part: Path, timeout: float, progress: bool, tally: _Tally) -> None:
    """Appends the rest of ``resource`` to ``part`` (restarting it where needed), counting bytes in ``tally``.

    Raises ``ConnectionError`` (or ``http.client.HTTPException``, a timeout) when the transfer stops early.
    """
    offset = part.stat().st_size if part.exists() else 0
    if resource.size is not None and offset >= resource.size:
        if offset == resource.size:
            return
        offset = 0  # longer than the published file: start again
    try:
        response = _open(resource.url, offset, timeout)
    except _RangeRefused:
        offset = 0
        response = _open(resource.url, 0, timeout)
    received = 0
    with response:
        if offset and response.status == 206:
            m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise DownloadError(f"{resource.url}: unexpected Content-Range {response.headers['Content-Range']!r}")
        else:
            offset = 0  # 200 to a Range request: the server sends the whole file
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None and length.isdigit() else None
        total = resource.size or (offset + remaining if remaining is not None else None)
        with open(part, "ab" if offset else "wb") as f, _bar(total, offset, resource.filename, progress) as bar:
            try:
                while block := response.read(CHUNK):
                    f.write(block)
                    received += len(block)
                    tally.received += len(block)
                    bar.update(len(block))
            finally:
                f.flush()
                os.fsync(f.fileno())
        if remaining is not None and received < remaining:
            raise ConnectionError(f"connection closed after {received:,} of {remaining:,} bytes")


def fetch(
    resource: Resource,
    directory: str | os.PathLike[str],
    *,
    progress: bool = True,
    timeout: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
) -> Fetched:
    """Downloads ``resource`` into ``directory`` (resuming a ``.part`` file), verifies it, renames it into place.

    A verified file already at ``directory/filename`` is kept and not downloaded again; one that fails the
    check is an error (it is not ours to delete). ``attempts`` bounds the resumptions after a dropped connection.
    """
    directory = Path(directory)
    target = directory / resource.filename
    if target.exists():
        sha256, md5 = _hash_file(target, progress)
        problem = _mismatch(resource, target, sha256, md5)
        if problem:
            raise DownloadError(f"{target} exists but does not match the published file ({problem}); remove it")
        return Fetched(target, sha256, md5, resource.has_checksum, 0)

    directory.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    tally = _Tally()
    for attempt in range(1, max(1, attempts) + 1):
        try:
            _transfer(resource, part, timeout, progress, tally)
            break
        except (ConnectionError, http.client.HTTPException, TimeoutError) as e:
            if attempt >= attempts:
                raise DownloadError(
                    f"{resource.url}: transfer interrupted ({e}); {part} keeps the "
                    f"{part.stat().st_size if part.exists() else 0:,} bytes received: run again to resume"
                ) from None

    sha256, md5 = _hash_file(part, progress)
    problem = _mismatch(resource, part, sha256, md5)
    if problem:
        part.unlink()
        raise DownloadError(f"{resource.url}: {problem}; the corrupt download was removed")
    os.replace(part, target)
    return Fetched(target, sha256, md5, resource.has_checksum, tally.received)


# ---------------------------------------------------------------------------------------------------------
# A dataset.


def dataset(name: str, directory: str | os.PathLike[str] = "DIR") -> Dataset:
    """The registry entry of ``name``; ``ManualDownload`` (with the steps) for Google Drive datasets."""
    if name in MANUAL:
        raise ManualDownload(MANUAL[name].format(dir=os.fspath(directory)))
    if name not in DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    return DATASETS[name]


def download(
    name: str,
    directory: str | os.PathLike[str],
    *,
    progress: bool = True,
    resources: Iterable[Resource] | None = None,
) -> list[Fetched]:
    """Fetches every file of dataset ``name`` into ``directory`` (``resources`` replaces the registry's)."""
    files = tuple(resources) if resources is not None else dataset(name, directory).resources
    return [fetch(r, directory, progress=progress) for r in files]


def convert_downloaded(
    name: str,
    directory: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> DatasetInfo:
    """Runs ``tripod-data convert`` on the downloaded files of ``name``; ``out`` defaults to ``DIR/NAME.h5``."""
    entry = dataset(name, directory)
    if entry.converter not in PUBLISHED:
        raise DownloadError(f"there is no converter for {name} yet; its downloaded files are in {directory}")
    sizes = list(entry.factor_sizes) if entry.factor_sizes is not None else None
    out = Path(directory) / f"{name}.h5" if out is None else out
    return convert(entry.converter, Path(directory) / entry.convert_src, out, sizes, progress=progress)
