"""Datasets that are not there: one-line errors naming every missing dataset, the cache, downloads with checksums.

No test touches the internet: LRNOISE_CIFAR_URL points at 127.0.0.1 (a closed port, a silent socket, or a small
http.server thread serving archives made by make_cifar) and LRNOISE_DATA_CACHE at a fresh folder.
"""

import contextlib
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from test_data import _trust, make_cifar

from lrnoise.data import archives, loading, sources
from lrnoise.errors import LrnoiseError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty download cache for this test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LRNOISE_DATA_CACHE", str(folder))
    return folder


@pytest.fixture
def closed_port_url(monkeypatch):
    """LRNOISE_CIFAR_URL at a port of 127.0.0.1 nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    monkeypatch.setenv("LRNOISE_CIFAR_URL", url)
    return url


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def serve(monkeypatch):
    """serve(folder): an HTTP server thread on 127.0.0.1 for `folder`, set as LRNOISE_CIFAR_URL; returns the
    list of request paths it received."""
    servers = []

    def start(folder):
        handler = functools.partial(_CountingHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.requests = []
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("LRNOISE_CIFAR_URL", f"http://127.0.0.1:{server.server_address[1]}/")
        return server.requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _served_archive(tmp_path, monkeypatch, name="cifar10"):
    """An official-format archive in tmp_path/'www' whose MD5 counts as the official one; (path, arrays...)."""
    www = tmp_path / "www"
    www.mkdir(exist_ok=True)
    made = make_cifar(www, name)
    _trust(monkeypatch, name, made[0])
    return made


def _message(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, "the error must be one line"
    return text


# ---------------------------------------------------------------- offline
def test_offline_names_every_missing_dataset_at_once(cache, closed_port_url):
    start = time.perf_counter()
    with pytest.raises(LrnoiseError) as excinfo:
        sources.require(["cifar10", "cifar100", "digits", "cifar10"])
    seconds = time.perf_counter() - start
    text = _message(excinfo)
    assert seconds < 5, f"offline took {seconds:.1f} s"
    assert text.startswith("dataset cifar10 unavailable (download from " + closed_port_url + "cifar-10-python.tar.gz")
    assert "connection refused" in text
    assert " and dataset cifar100 unavailable (" in text
    assert text.count("dataset cifar10 unavailable") == 1 and "digits" not in text
    assert text.endswith(
        f": download cifar-10-python.tar.gz, cifar-100-python.tar.gz from {closed_port_url} and pass --data-dir DIR"
    )
    assert not cache.exists() or not any(cache.iterdir()), "a failed download left files in the cache"


def test_digits_needs_no_network(cache, closed_port_url):
    assert sources.require(["digits"]) == {"digits": None}
    assert sources.locate("digits", data_dir="/nowhere") is None


def test_unknown_dataset_is_refused_before_anything(cache, closed_port_url):
    with pytest.raises(LrnoiseError, match="unknown dataset 'mnist': choose one of digits, cifar10, cifar100"):
        sources.require(["cifar10", "mnist"])


def test_silent_server_times_out_fast(cache, monkeypatch):
    """A server that accepts the connection but never answers: the socket timeout ends the wait."""
    monkeypatch.setattr(sources, "NETWORK_TIMEOUT_S", 0.5)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # the kernel completes the handshake; nobody ever reads or answers
        monkeypatch.setenv("LRNOISE_CIFAR_URL", f"http://127.0.0.1:{listener.getsockname()[1]}/")
        start = time.perf_counter()
        with pytest.raises(LrnoiseError) as excinfo:
            sources.require(["cifar10", "cifar100"])
        seconds = time.perf_counter() - start
    text = _message(excinfo)
    assert "no answer within 0.5 s" in text
    assert "cifar100 unavailable (download from " in text and "not tried: no answer within 0.5 s" in text
    assert seconds < 3, f"an unreachable server must be waited for once, not per dataset ({seconds:.1f} s)"


def test_no_download_when_downloading_is_off(cache, serve, tmp_path, monkeypatch):
    _served_archive(tmp_path, monkeypatch)
    requests = serve(tmp_path / "www")
    with pytest.raises(LrnoiseError, match="not in the cache .* and downloading is off"):
        sources.locate("cifar10", download=False)
    assert requests == []


# ---------------------------------------------------------------- a data dir that lacks the data
def test_truncated_archive_names_the_checksum_mismatch(tmp_path, monkeypatch, closed_port_url):
    path, *_ = make_cifar(tmp_path, "cifar10")
    _trust(monkeypatch, "cifar10", path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    actual = hashlib.md5(raw[: len(raw) // 2]).hexdigest()
    with pytest.raises(LrnoiseError) as excinfo:
        sources.require(["cifar10"], data_dir=tmp_path)
    text = _message(excinfo)
    assert (
        f"checksum mismatch for {path}: md5 {actual}, the official cifar-10-python.tar.gz has "
        f"{archives.CIFAR['cifar10'].md5}" in text
    )
    assert "download cifar-10-python.tar.gz from" in text


def test_data_dir_without_archive_or_folder_says_what_to_put_there(tmp_path, closed_port_url):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LrnoiseError) as excinfo:
        sources.require(["digits", "cifar100"], data_dir=empty)
    text = _message(excinfo)
    assert f"data dir {empty} holds neither cifar-100-python.tar.gz nor an extracted cifar-100-python/" in text
    assert text.endswith(f"download cifar-100-python.tar.gz from {closed_port_url} into {empty}")


def test_data_dir_is_resolved_to_the_archive_or_the_folder(tmp_path, monkeypatch):
    archive, *_ = make_cifar(tmp_path, "cifar100")
    _trust(monkeypatch, "cifar100", archive)
    _, x_train, *_ = make_cifar(tmp_path, "cifar10", extracted=True)
    found = sources.require(["cifar100", "cifar10"], data_dir=tmp_path)
    assert found == {"cifar100": archive, "cifar10": tmp_path / "cifar-10-batches-py"}
    np.testing.assert_array_equal(loading.load("cifar10", data_dir=tmp_path, val_fraction=0.0).x_train, x_train)


# ---------------------------------------------------------------- the cache
def test_cached_archive_is_used_offline(cache, closed_port_url, tmp_path, monkeypatch):
    cache.mkdir()
    archive, x_train, y_train, x_test, y_test = make_cifar(cache, "cifar10")
    _trust(monkeypatch, "cifar10", archive)
    assert sources.require(["cifar10"]) == {"cifar10": archive}
    ds = loading.load("cifar10", val_fraction=0.0)
    np.testing.assert_array_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.y_test, y_test)


def test_cache_dir_defaults_to_the_keras_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("LRNOISE_DATA_CACHE", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.cache_dir() == tmp_path / ".keras" / "datasets"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert sources.cache_dir() == tmp_path / "kh" / "datasets"
    monkeypatch.setenv("LRNOISE_DATA_CACHE", str(tmp_path / "mine"))
    assert sources.cache_dir() == tmp_path / "mine"


# ---------------------------------------------------------------- downloads from a local server
@pytest.mark.e2e
def test_download_lands_in_cache_once_and_reads_back(cache, serve, tmp_path, monkeypatch, capsys):
    served, x_train, y_train, x_test, y_test = _served_archive(tmp_path, monkeypatch)
    requests = serve(tmp_path / "www")
    found = sources.require(["cifar10", "digits"])
    assert found == {"cifar10": cache / "cifar-10-python.tar.gz", "digits": None}
    assert found["cifar10"].read_bytes() == served.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-python.tar.gz"]  # no temporary file left
    progress = capsys.readouterr().err
    assert "downloading cifar-10-python.tar.gz  100% " in progress and " MB" in progress
    sources.require(["cifar10"])
    ds = loading.load("cifar10", val_fraction=0.0)
    assert requests == ["/cifar-10-python.tar.gz"], "downloaded more than once"
    np.testing.assert_array_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.x_test, x_test)
    np.testing.assert_array_equal(ds.y_test, y_test)


@pytest.mark.e2e
def test_corrupted_download_leaves_nothing_in_cache(cache, serve, tmp_path, monkeypatch):
    served, *_ = _served_archive(tmp_path, monkeypatch)
    raw = bytearray(served.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same length, one byte flipped
    served.write_bytes(bytes(raw))
    serve(tmp_path / "www")
    with pytest.raises(LrnoiseError) as excinfo:
        sources.require(["cifar10"])
    text = _message(excinfo)
    assert (
        f"checksum mismatch for the download from {sources.cifar_url()}cifar-10-python.tar.gz: "
        f"md5 {hashlib.md5(raw).hexdigest()}, the official cifar-10-python.tar.gz has "
        f"{archives.CIFAR['cifar10'].md5}"
    ) in text
    assert list(cache.iterdir()) == []


@pytest.mark.e2e
def test_stale_cached_archive_is_replaced(cache, serve, tmp_path, monkeypatch):
    served, *_ = _served_archive(tmp_path, monkeypatch)
    cache.mkdir()
    (cache / "cifar-10-python.tar.gz").write_bytes(b"half a download")
    requests = serve(tmp_path / "www")
    assert sources.locate("cifar10").read_bytes() == served.read_bytes()
    assert len(requests) == 1


@pytest.mark.e2e
def test_missing_file_on_server_is_an_http_error(cache, serve, tmp_path, monkeypatch):
    _served_archive(tmp_path, monkeypatch, "cifar10")  # the server has cifar10 only
    requests = serve(tmp_path / "www")
    with pytest.raises(LrnoiseError) as excinfo:
        sources.require(["cifar100", "cifar10"])
    text = _message(excinfo)
    assert text.startswith("dataset cifar100 unavailable (download from ")
    assert "cifar-100-python.tar.gz failed: HTTP 404" in text and "cifar10 unavailable" not in text
    assert len(requests) == 2  # a 404 is not 'unreachable': the next dataset is still tried


# ---------------------------------------------------------------- the commands, offline
def _cli_offline(args, tmp_path, cache_folder, url):
    env = {
        **os.environ,
        "LRNOISE_CIFAR_URL": url,
        "LRNOISE_DATA_CACHE": str(cache_folder),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "lrnoise.cli", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )


def _own_lines(text):  # TensorFlow's start-up chatter on stderr is not ours
    return [
        row
        for row in text.splitlines()
        if row.strip() and not row.startswith(("I0000", "E0000", "W0000", "WARNING: All log"))
    ]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, names",
    [
        (["train", "--dataset", "cifar10", "--epochs", "1"], ["cifar10"]),
        (["study", "--preset", "paper"], ["cifar10", "cifar100"]),
    ],
)
def test_commands_offline_say_so_in_one_line_and_create_no_run(tmp_path, cache, closed_port_url, args, names):
    proc = _cli_offline(args, tmp_path, cache, closed_port_url)
    lines = _own_lines(proc.stdout + proc.stderr)
    assert proc.returncode == 2 and len(lines) <= 3, lines
    assert "Traceback" not in proc.stderr and all(name in lines[-1] for name in names)
    assert "--data-dir" in lines[-1] and lines[-1].count("\n") == 0
    if (tmp_path / "mlflow.db").exists():  # the store, if it was even created, holds no run
        import sqlite3

        with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as db:
            assert db.execute("select count(*) from runs").fetchone()[0] == 0
