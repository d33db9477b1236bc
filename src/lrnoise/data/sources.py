"""Where a dataset's data is, before any run starts: the official CIFAR archive (MD5-checked) or its extracted
folder in the user's data dir, else the archive in the download cache (cache_dir), downloaded there when absent
(checked before it is kept; LRNOISE_CIFAR_URL names a mirror). locate() answers for one dataset, require() for
all of a command's at once, in ONE one-line LrnoiseError naming every dataset that is unavailable and why.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from lrnoise import config
from lrnoise.data import idx
from lrnoise.data.archives import CIFAR, CifarSpec, md5sum
from lrnoise.errors import LrnoiseError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"  # where the official archives are (cifar_url: or a mirror)
NETWORK_TIMEOUT_S = 10.0  # socket timeout for the connect and for each read: offline fails in seconds


class _Missing(Exception):
    """Why one dataset is unavailable (one clause, no newline). `offline` holds the short cause when the
    server could not be reached at all, so the other datasets of a `require` do not retry it."""

    def __init__(self, reason: str, offline: str | None = None):
        super().__init__(reason.replace("\n", " "))
        self.offline = offline


def cifar_url() -> str:
    """Base URL of the official archives; LRNOISE_CIFAR_URL overrides it (a mirror, or a test server)."""
    url = os.environ.get("LRNOISE_CIFAR_URL", CIFAR_URL)
    return url if url.endswith("/") else url + "/"


def cache_dir() -> Path:
    """LRNOISE_DATA_CACHE, else where keras.utils.get_file cached the archives before:
    $KERAS_HOME/datasets or ~/.keras/datasets (/tmp/.keras/datasets when that home is not writable, as Keras does)."""
    override = os.environ.get("LRNOISE_DATA_CACHE")
    if override:
        return Path(override).expanduser()
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    if home.is_dir() and not os.access(home, os.W_OK):
        home = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
    return home / "datasets"


def _mismatch(path, actual: str, spec: CifarSpec) -> str:
    return f"checksum mismatch for {path}: md5 {actual}, the official {spec.archive} has {spec.md5}"


def _from_data_dir(root: Path, spec: CifarSpec) -> Path:
    """The official archive in `root` (MD5-checked) or the extracted folder (`root/<folder>` or `root` itself)."""
    if not root.is_dir():
        raise _Missing(f"data dir {root} does not exist")
    archive = root / spec.archive
    if archive.is_file():
        actual = md5sum(archive)
        if actual != spec.md5:
            raise _Missing(_mismatch(archive, actual, spec))
        return archive
    for folder in (root / spec.folder, root):
        if (folder / spec.test_file).is_file():
            return folder
    raise _Missing(f"data dir {root} holds neither {spec.archive} nor an extracted {spec.folder}/")


def _why(exc: BaseException) -> str:
    """A short cause for a failed download: 'connection refused', 'HTTP 404 Not Found', ..."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        return "no network or unknown host"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return f"no answer within {NETWORK_TIMEOUT_S:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return " ".join(str(reason).split()) or type(reason).__name__


def _unreachable(exc: BaseException) -> bool:
    """True when the server was not reached at all (not an HTTP status): later downloads from it would fail too."""
    if isinstance(exc, urllib.error.HTTPError):
        return False
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ValueError))  # ValueError: malformed URL


class _Progress:
    """A download's progress on stderr: rich's bar (size, speed, time left) on a terminal; in a log, a line
    'downloading NAME  37% 61.2/163.0 MB' per 10 % (per 10 MB without a Content-Length)."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.shown = label, total, 0, None
        self.bar = None
        if getattr(sys.stderr, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            columns = (
                *Progress.get_default_columns()[:2],
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            self.bar = Progress(*columns, console=Console(stderr=True), transient=False)
            self.task = self.bar.add_task(f"downloading {label}", total=total or None)
            self.bar.start()

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, advance=n)
            return
        step = (100 * self.done // self.total if self.total else self.done // 1_000_000) // 10
        if step != self.shown:
            self.shown = step
            done = self.done / 1e6
            text = (
                f"downloading {self.label}  {100 * self.done // self.total:3d}% {done:.1f}/{self.total / 1e6:.1f} MB"
                if self.total
                else f"downloading {self.label}  {done:.1f} MB"
            )
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _stream(url: str, out, label: str) -> str:
    """Copies `url` into the open binary file `out` with a progress bar; returns the MD5 of what arrived."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S) as response:
            progress = _Progress(label, int(response.headers.get("Content-Length") or 0))
            try:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    progress.update(len(block))
            finally:
                progress.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError and socket errors are OSErrors
        raise _Missing(
            f"download from {url} failed: {_why(exc)}", offline=_why(exc) if _unreachable(exc) else None
        ) from None
    return digest.hexdigest()


def _download(url: str, dest: Path, spec: CifarSpec) -> None:
    """Downloads into a temporary file next to `dest`, renamed to `dest` only once its MD5 is the official one;
    whatever happens otherwise (error, mismatch, Ctrl-C), nothing half-written stays in the cache."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = tempfile.NamedTemporaryFile(dir=dest.parent, prefix=dest.name + ".", suffix=".part", delete=False)
    except OSError as exc:
        raise _Missing(f"cannot write to the cache {dest.parent}: {_why(exc)}") from None
    tmp = Path(part.name)
    try:
        with part:
            actual = _stream(url, part, dest.name)
        if actual != spec.md5:
            raise _Missing(_mismatch(f"the download from {url}", actual, spec))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _from_cache(spec: CifarSpec, download: bool, offline: str | None) -> Path:
    """The archive in cache_dir() (MD5-checked), else downloaded there; a cached file that fails its MD5 is replaced."""
    cached = cache_dir() / spec.archive
    stale = ""
    if cached.is_file():
        actual = md5sum(cached)
        if actual == spec.md5:
            return cached
        stale = _mismatch(cached, actual, spec) + "; "
    url = cifar_url() + spec.archive
    if not download:
        raise _Missing(stale + f"not in the cache {cached.parent} and downloading is off")
    if offline is not None:  # an earlier dataset found the server unreachable: fail without waiting again
        raise _Missing(stale + f"download from {url} not tried: {offline}", offline=offline)
    try:
        _download(url, cached, spec)
    except _Missing as exc:
        raise _Missing(stale + str(exc), offline=exc.offline) from None
    return cached


def check_dataset(name: str) -> str:
    config.check_choice("dataset", name, config.DATASETS)
    return name


def _resolve(name: str, data_dir, download: bool, offline: str | None = None) -> Path | None:
    if name == "digits":  # bundled with scikit-learn
        return None
    if name == idx.FASHION_MNIST:  # the data dir, else Keras's cache, else the system package: never downloaded here
        folder = idx.find(data_dir)
        if folder is None:
            raise _Missing("its four IDX files are not there")
        return folder
    spec = CIFAR[name]
    if data_dir is not None:  # an explicit data dir is the only place looked at: no surprise downloads
        return _from_data_dir(Path(data_dir), spec)
    return _from_cache(spec, download, offline)


def _unavailable_message(missing: dict[str, str], data_dir) -> str:
    """One line: every missing dataset with its reason, then what to do."""
    if idx.FASHION_MNIST in missing:  # its own three ways to get it, in the same one line
        rest = {k: v for k, v in missing.items() if k != idx.FASHION_MNIST}
        return (_unavailable_message(rest, data_dir) + "; " if rest else "") + idx.missing_message(data_dir)
    clauses = " and ".join(f"dataset {name} unavailable ({why})" for name, why in missing.items())
    files = ", ".join(CIFAR[name].archive for name in missing)
    todo = (
        f"download {files} from {cifar_url()} into {data_dir}"
        if data_dir is not None
        else f"download {files} from {cifar_url()} and pass --data-dir DIR"
    )
    return f"{clauses}: {todo}"


def locate(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path | None:
    """Where dataset `name`'s data is: None for digits (bundled); for CIFAR the official archive (MD5-checked) or
    extracted folder in `data_dir` when given, else the archive in cache_dir(), downloaded there when absent.
    Raises LrnoiseError (one line: why, and what to do) when it is not available."""
    check_dataset(name)
    try:
        return _resolve(name, data_dir, download)
    except _Missing as exc:
        raise LrnoiseError(_unavailable_message({name: str(exc)}, data_dir)) from None


def require(names, data_dir: str | os.PathLike | None = None) -> dict[str, Path | None]:
    """locate() for every dataset in `names` (deduplicated, order kept), before any run starts.

    Raises ONE LrnoiseError naming every unavailable dataset with its reason; once the server proved unreachable
    the remaining downloads are not tried (offline costs one connect timeout at most, not one per dataset).
    """
    names = list(dict.fromkeys(names))
    for name in names:
        check_dataset(name)
    found: dict[str, Path | None] = {}
    missing: dict[str, str] = {}
    offline = None
    for name in names:
        try:
            found[name] = _resolve(name, data_dir, download=True, offline=offline)
        except _Missing as exc:
            missing[name] = str(exc)
            offline = offline or exc.offline
    if missing:
        raise LrnoiseError(_unavailable_message(missing, data_dir))
    return found
