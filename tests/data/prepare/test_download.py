"""``tripod-data download``: against an HTTP server on 127.0.0.1 serving fixture bytes (no real network).

The server's modes (first path segment): ``range`` honours ``Range``; ``norange`` ignores it (always 200 and
the whole file); ``drop`` closes the connection half-way through the first ``drops`` responses; ``error``
answers 500. It counts the body bytes it sent, so resumption is checked by what crossed the wire.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tripod_pl.data import read_info
from tripod_pl.data.prepare import download as dl
from tripod_pl.data.prepare.cli import main
from tripod_pl.data.prepare.download import DownloadError, Resource, fetch

from . import published

PAYLOAD = random.Random(0).randbytes(300_001)
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        mode = self.path.split("/")[1]
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        if mode == "error":
            self.send_error(500, "Internal Server Error")
            return
        data = srv.payloads.get(self.path.split("/", 2)[2], PAYLOAD)
        start = 0
        if rng and mode != "norange":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
            if start >= len(data):
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop" and srv.drops > 0:
            srv.drops -= 1
            body = body[: len(body) // 2]
            self.close_connection = True
        srv.sent += len(body)  # before the write: the client may check it as soon as the bytes arrive
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str | None]] = []
        self.payloads: dict[str, bytes] = {}
        self.sent = 0
        self.drops = 0

    def url(self, mode: str, name: str = "file.bin") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}/{name}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _resource(url: str, **checksums: object) -> Resource:
    return Resource("file.bin", url, **checksums)  # type: ignore[arg-type]


def _fetch(resource: Resource, directory: Path, **kw: object) -> dl.Fetched:
    return fetch(resource, directory, progress=False, timeout=10.0, **kw)  # type: ignore[arg-type]


def test_a_matching_download_is_verified_and_renamed_into_place(server: _Server, tmp_path: Path) -> None:
    got = _fetch(_resource(server.url("range"), sha256=SHA256, md5=MD5, size=len(PAYLOAD)), tmp_path)
    assert got.path == tmp_path / "file.bin" and got.path.read_bytes() == PAYLOAD
    assert got.verified and got.sha256 == SHA256 and got.md5 == MD5 and got.downloaded_bytes == len(PAYLOAD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]  # no .part left
    assert "checksum verified" in got.describe()


def test_a_verified_file_is_not_downloaded_again(server: _Server, tmp_path: Path) -> None:
    resource = _resource(server.url("range"), sha256=SHA256)
    _fetch(resource, tmp_path)
    again = _fetch(resource, tmp_path)
    assert again.verified and again.downloaded_bytes == 0 and "already present" in again.describe()
    assert len(server.requests) == 1 and server.sent == len(PAYLOAD)


def test_an_existing_file_that_differs_is_an_error_and_is_kept(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "file.bin").write_bytes(b"mine")
    with pytest.raises(DownloadError, match=r"file.bin exists but does not match .*remove it"):
        _fetch(_resource(server.url("range"), sha256=SHA256), tmp_path)
    assert (tmp_path / "file.bin").read_bytes() == b"mine" and not server.requests


@pytest.mark.parametrize("kind", ["sha256", "md5"])
def test_a_checksum_mismatch_removes_the_download_and_names_both_digests(
    server: _Server, tmp_path: Path, kind: str
) -> None:
    wrong = "0" * (64 if kind == "sha256" else 32)
    actual = SHA256 if kind == "sha256" else MD5
    with pytest.raises(DownloadError) as e:
        _fetch(_resource(server.url("range"), **{kind: wrong}), tmp_path)
    label = "SHA-256" if kind == "sha256" else "MD5"
    assert f"checksum mismatch: expected {label} {wrong}, got {actual}" in str(e.value)
    assert "removed" in str(e.value) and list(tmp_path.iterdir()) == []


def test_a_size_mismatch_is_corrupt_too(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=f"size {len(PAYLOAD):,} bytes, expected {len(PAYLOAD) + 1:,}"):
        _fetch(_resource(server.url("range"), sha256=SHA256, size=len(PAYLOAD) + 1), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_dropped_connection_is_resumed_from_the_part_file(server: _Server, tmp_path: Path) -> None:
    server.drops = 1
    got = _fetch(_resource(server.url("drop"), sha256=SHA256), tmp_path)
    assert got.path.read_bytes() == PAYLOAD and got.verified
    half = len(PAYLOAD) // 2
    assert server.requests[1][1] == f"bytes={half}-"  # the second request continues where the first stopped
    assert server.sent == len(PAYLOAD) < 2 * len(PAYLOAD) and got.downloaded_bytes == len(PAYLOAD)


def test_an_interrupted_run_keeps_the_part_file_and_the_next_run_continues_it(server: _Server, tmp_path: Path) -> None:
    server.drops = 1
    resource = _resource(server.url("drop"), sha256=SHA256)
    with pytest.raises(DownloadError, match=r"transfer interrupted .* run again to resume"):
        _fetch(resource, tmp_path, attempts=1)
    part = tmp_path / "file.bin.part"
    half = len(PAYLOAD) // 2
    assert part.read_bytes() == PAYLOAD[:half] and not (tmp_path / "file.bin").exists()
    got = _fetch(resource, tmp_path)
    assert got.path.read_bytes() == PAYLOAD and not part.exists()
    assert server.sent == len(PAYLOAD) and got.downloaded_bytes == len(PAYLOAD) - half


def test_a_complete_part_file_of_the_published_size_needs_no_request(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)
    got = _fetch(_resource(server.url("range"), sha256=SHA256, size=len(PAYLOAD)), tmp_path)
    assert got.path.read_bytes() == PAYLOAD and got.verified and got.downloaded_bytes == 0 and not server.requests


def test_a_server_that_ignores_range_restarts_the_file(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:1000])
    got = _fetch(_resource(server.url("norange"), sha256=SHA256), tmp_path)
    assert server.requests == [("/norange/file.bin", "bytes=1000-")]
    assert got.path.read_bytes() == PAYLOAD and server.sent == len(PAYLOAD)


def test_a_part_file_that_is_not_a_prefix_is_restarted_after_416(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD + b"extra")  # longer than the file: 416
    got = _fetch(_resource(server.url("range"), sha256=SHA256), tmp_path)
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD) + 5}-", None]
    assert got.path.read_bytes() == PAYLOAD


def test_a_server_error_is_one_line_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    url = server.url("error")
    with pytest.raises(DownloadError) as e:
        _fetch(_resource(url, sha256=SHA256), tmp_path)
    assert str(e.value) == f"{url}: the server answered HTTP 500 Internal Server Error"
    assert list(tmp_path.iterdir()) == []


def test_offline_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=rf"^cannot reach 127\.0\.0\.1:{port} \(.*refused.*\); offline\?"):
        _fetch(_resource(f"http://127.0.0.1:{port}/x/file.bin", sha256=SHA256), tmp_path)


def test_a_file_without_a_published_checksum_is_accepted_with_a_warning(server: _Server, tmp_path: Path) -> None:
    got = _fetch(_resource(server.url("range")), tmp_path)
    assert got.path.read_bytes() == PAYLOAD and not got.verified
    assert got.describe().startswith("warning: ") and SHA256 in got.describe()


def test_the_registry_lists_each_file_once_with_a_published_checksum_or_a_documented_exception() -> None:
    for name, entry in dl.DATASETS.items():
        assert entry.resources and entry.checksum_source
        for r in entry.resources:
            assert r.url.startswith(("https://", "http://")) and r.url.rsplit("/", 1)[1] == r.filename
            assert r.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", r.sha256)
            assert r.md5 is None or re.fullmatch(r"[0-9a-f]{32}", r.md5)
            assert r.has_checksum or name.startswith("mpi3d_"), name  # MPI3D's Hugging Face copies: none published
    assert not set(dl.DATASETS) & set(dl.MANUAL)
    assert len(dl.DATASETS["smallnorb"].resources) == 6


# --- the command line -------------------------------------------------------------------------------------


def test_cli_downloads_verifies_and_converts(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    npz = tmp_path / "fixture.npz"
    images = published.mpi3d(npz)
    server.payloads["mpi3d_toy.npz"] = data = npz.read_bytes()
    resource = Resource("mpi3d_toy.npz", server.url("range", "mpi3d_toy.npz"), sha256=hashlib.sha256(data).hexdigest())
    entry = dl.Dataset((resource,), "test", "mpi3d", "mpi3d_toy.npz", tuple(published.MPI3D_SIZES))
    monkeypatch.setitem(dl.DATASETS, "mpi3d_toy", entry)
    out = tmp_path / "dl"
    assert main(["download", "mpi3d_toy", str(out), "--convert", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mpi3d_toy.npz: " in printed and "checksum verified" in printed
    info = read_info(out / "mpi3d_toy.h5")
    assert info.num_images == len(images) and info.source_sizes == published.MPI3D_SIZES


def test_cli_errors_are_one_line(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(dl.DATASETS, "shapes3d", dl.Dataset((_resource(server.url("error"), md5=MD5),), "test"))
    with pytest.raises(SystemExit) as e:
        main(["download", "shapes3d", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("tripod-data: error: ") and "HTTP 500" in err


def test_cli_prints_the_manual_steps_for_google_drive_datasets(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["download", "falcor3d", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "Google Drive" in err
    assert f"tripod-data convert falcor3d {tmp_path}/Falcor3D_down128" in err and not any(tmp_path.iterdir())


def test_cli_convert_says_when_no_converter_exists_yet(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(dl.DATASETS, "cars3d", dl.Dataset((_resource(server.url("range")),), "test", "no-such"))
    with pytest.raises(SystemExit):
        main(["download", "cars3d", str(tmp_path), "--convert", "--quiet"])
    err = capsys.readouterr().err
    assert "warning: " in err and "no converter for cars3d yet" in err
    assert np.frombuffer((tmp_path / "file.bin").read_bytes(), np.uint8).size == len(PAYLOAD)
