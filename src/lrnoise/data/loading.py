"""Datasets: the embedded `digits`, CIFAR10/100 (download or official archives), and the training pipeline.

The input pipeline's TensorFlow code (tf.data) lives here; gradnoise.py has the other TensorFlow-only paths (its
traced gradient functions, each with a backend-neutral fallback). Images stay uint8 NHWC in memory
and are cast to float32 one batch at a time, just before they reach the model (whose first layer normalises).
Two interchangeable training pipelines: tf.data (when TensorFlow is installed) and a NumPy `PyDataset` that
needs no TensorFlow (any Keras backend); `LRNOISE_PIPELINE=numpy|tf` picks one explicitly.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import pickle
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrnoise import config
from lrnoise.errors import LrnoiseError


@dataclass(frozen=True)
class CifarSpec:
    archive: str  # official file name
    md5: str  # official checksum (https://www.cs.toronto.edu/~kriz/cifar.html)
    folder: str  # folder the archive extracts to
    train_files: tuple[str, ...]
    test_file: str
    label_key: bytes  # cifar100: fine labels (100 classes)
    num_classes: int


CIFAR = {
    "cifar10": CifarSpec(
        "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        b"labels",
        10,
    ),
    "cifar100": CifarSpec(
        "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
        ("train",),
        "test",
        b"fine_labels",
        100,
    ),
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


@dataclass
class Dataset:
    """Raw images NHWC as stored (uint8 for CIFAR and digits) and integer labels."""

    name: str
    num_classes: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""  # where the images came from: an archive or folder, or scikit-learn's bundled digits

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


# ---------------------------------------------------------------- safe reading of the pickled batches
class _BatchUnpickler(pickle.Unpickler):
    """Admits only what the official CIFAR batches hold: dicts, lists, bytes, ints and numpy arrays.

    Builtin containers need no globals; the only globals a pickled ndarray needs are these three.
    Anything else (os.system, builtins.eval, ...) is refused before it can run.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):  # how Python 3 protocol-2 writers store bytes
            return _latin1_encode
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise LrnoiseError(
            f"refusing to unpickle {module}.{name}: CIFAR batches only hold dicts, lists, bytes, ints and numpy arrays"
        )


def _latin1_encode(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1"):
        raise LrnoiseError(f"refusing to unpickle bytes encoded as {encoding!r}: CIFAR batches use latin1")
    return str(text).encode("latin1")


def read_batch(raw: bytes, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR batch -> (uint8 images N x 32 x 32 x 3, int64 labels N)."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except LrnoiseError:
        raise
    except Exception as exc:  # truncated or foreign file
        raise LrnoiseError(f"not a CIFAR batch: {exc}") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise LrnoiseError(f"not a CIFAR batch: expected keys b'data' and {label_key!r}")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    # Stored as N x 3072, channel-major (1024 R, 1024 G, 1024 B) -> NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(batch[label_key], dtype=np.int64)


_MD5_SEEN: dict[tuple, str] = {}  # (real path, inode, size, mtime_ns) -> md5: a file unchanged is hashed once


def md5sum(path: Path) -> str:
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _MD5_SEEN:
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _MD5_SEEN[key] = digest.hexdigest()
    return _MD5_SEEN[key]


def _read_cifar_files(spec: CifarSpec, read) -> tuple[np.ndarray, ...]:
    """`read(name)` returns one batch file's bytes; gives x_train, y_train, x_test, y_test."""
    parts = [read_batch(read(f), spec.label_key) for f in spec.train_files]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = read_batch(read(spec.test_file), spec.label_key)
    return x_train, y_train, x_test, y_test


def read_cifar_archive(path: Path, spec: CifarSpec) -> tuple[np.ndarray, ...]:
    """Reads the official tar.gz in memory (nothing extracted: no path tricks) after checking its MD5."""
    actual = md5sum(path)
    if actual != spec.md5:
        raise LrnoiseError(f"checksum mismatch for {path}: md5 {actual}, the official {spec.archive} has {spec.md5}")
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}

        def read(name):
            member = members.get(f"{spec.folder}/{name}")
            if member is None:
                raise LrnoiseError(f"{path} has no {spec.folder}/{name}: not the official {spec.archive}")
            return tar.extractfile(member).read()

        return _read_cifar_files(spec, read)


def read_cifar_folder(folder: Path, spec: CifarSpec) -> tuple[np.ndarray, ...]:
    def read(name):
        file = folder / name
        if not file.is_file():
            raise LrnoiseError(f"{folder} has no {name}: expected the extracted official {spec.folder}")
        return file.read_bytes()

    return _read_cifar_files(spec, read)


# ---------------------------------------------------------------- where the data is: data dir, cache, download
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
    """'downloading NAME  37% 61.2/163.0 MB' on stderr: redrawn in place on a terminal, a line per 10 % otherwise."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.shown = label, total, 0, None
        self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)())

    def update(self, n: int) -> None:
        self.done += n
        # Redraw on each percent (terminal) or 10 % (log); without a Content-Length, on each MB / 10 MB.
        step = 100 * self.done // self.total if self.total else self.done // 1_000_000
        step = step if self.tty else step // 10
        if step != self.shown:
            self.shown = step
            self._draw()

    def _draw(self) -> None:
        done = self.done / 1e6
        text = (
            f"downloading {self.label}  {100 * self.done // self.total:3d}% {done:.1f}/{self.total / 1e6:.1f} MB"
            if self.total
            else f"downloading {self.label}  {done:.1f} MB"
        )
        sys.stderr.write("\r" + text if self.tty else text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and self.shown is not None:
            sys.stderr.write("\n")
            sys.stderr.flush()


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
    spec = CIFAR[name]
    if data_dir is not None:  # an explicit data dir is the only place looked at: no surprise downloads
        return _from_data_dir(Path(data_dir), spec)
    return _from_cache(spec, download, offline)


def _unavailable_message(missing: dict[str, str], data_dir) -> str:
    """One line: every missing dataset with its reason, then what to do."""
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


def _load_cifar(name: str, data_dir: str | os.PathLike | None) -> tuple[tuple[np.ndarray, ...], str]:
    """(the four arrays, the archive or folder they were read from)."""
    spec = CIFAR[name]
    path = locate(name, data_dir)  # MD5 already checked there; md5sum remembers it, so it is not hashed twice
    return (read_cifar_archive(path, spec) if path.is_file() else read_cifar_folder(path, spec)), str(path)


DIGITS_SOURCE = "sklearn.datasets.load_digits"


def _load_digits() -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16), with a fixed 20 % test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[..., None]  # N x 8 x 8 x 1
    y = bunch.target.astype(np.int64)
    order = np.random.RandomState(0).permutation(len(x))  # test split fixed whatever the seed
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def load(name: str, data_dir: str | os.PathLike | None = None, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """Loads `name`; the validation split is drawn from the training set with `seed` (the test set is fixed)."""
    check_dataset(name)
    if not 0.0 <= val_fraction < 1.0:
        raise LrnoiseError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if name == "digits":
        (x_train, y_train, x_test, y_test), source = _load_digits(), DIGITS_SOURCE
        num_classes = 10
    else:
        (x_train, y_train, x_test, y_test), source = _load_cifar(name, data_dir)
        num_classes = CIFAR[name].num_classes
    order = np.random.RandomState(seed).permutation(len(x_train))
    n_val = int(round(len(x_train) * val_fraction))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Dataset(
        name, num_classes, x_train[train], y_train[train], x_train[val], y_train[val], x_test, y_test, source
    )


# ---------------------------------------------------------------- training input pipeline (tf.data)
def augment_batch(images, seed, pad: int, flip: bool):
    """Per-example random crop after zero padding by `pad`, and random horizontal flip.

    images: B x H x W x C (any dtype); seed: int32/int64 pair for the stateless ops. Each image gets
    its own offsets (unlike keras.layers.RandomCrop, which crops a whole batch the same way).
    Returns B x H x W x C of the same dtype. Pure function: same images and seed, same output.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    if pad:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        offsets = tf.random.stateless_uniform([b, 2], seed=seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(h)[None, :]  # B x H
        cols = offsets[:, 1:] + tf.range(w)[None, :]  # B x W
        images = tf.gather(padded, rows, axis=1, batch_dims=1)  # B x H x (W+2p) x C
        images = tf.gather(images, cols, axis=2, batch_dims=1)  # B x H x W x C
    if flip:
        coin = tf.random.stateless_uniform([b], seed=seed + 1, minval=0, maxval=2, dtype=tf.int32)
        images = tf.where((coin == 1)[:, None, None, None], tf.reverse(images, axis=[2]), images)
    return images


def augmentation_for(name: str) -> tuple[int, bool]:
    """(pad, flip): CIFAR gets the He et al. 4-pixel pad + crop + flip; digits a 1-pixel shift, no flip."""
    return (4, True) if name.startswith("cifar") else (1, False)


def train_pipeline(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    start_epoch: int = 0,
    augment: tuple[int, bool] = (0, False),
    end_epoch: int | None = None,
    skip: int = 0,
):
    """tf.data stream of (float32 images, int labels) batches, epoch after epoch from `start_epoch` up to (not
    including) `end_epoch` (None: endless), its first `skip` batches left out (a resume inside an epoch). A
    training passes its last epoch: an endless stream's iterator, dropped by model.fit at its end with the next
    epoch's batches in flight, stalled a study worker 5-9 s in sampled stacks (two workers on 2 cores); a stream
    that ends there has nothing in flight.

    Epoch e uses permutation stateless_shuffle(seed, e) and augmentation seeds (seed, e, batch), so the
    stream is a pure function of (seed, epoch): resuming at epoch k replays exactly what an uninterrupted
    run would have seen. Use with steps_per_epoch = steps_per_epoch(len(x), batch_size).
    """
    import tensorflow as tf

    n = len(x)
    images = tf.constant(x)  # uint8 stays uint8 in memory
    labels = tf.constant(y)
    steps = steps_per_epoch(n, batch_size)
    pad, flip = augment

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=[seed, epoch])
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
        return tf.data.Dataset.zip(batches, tf.data.Dataset.range(steps)).map(
            lambda idx, step: (idx, tf.stack([tf.cast(seed, tf.int64), epoch * steps + step]))
        )

    def make_batch(idx, batch_seed):
        xb = tf.gather(images, idx)
        if pad or flip:
            xb = augment_batch(xb, batch_seed, pad, flip)
        return tf.cast(xb, tf.float32), tf.gather(labels, idx)

    ds = tf.data.Dataset.range(start_epoch, 1 << 30 if end_epoch is None else end_epoch).flat_map(epoch_batches)
    ds = ds.skip(skip)  # before the map: a skipped batch is never gathered or augmented
    ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _without_autotuning(ds.prefetch(PREFETCH_BATCHES))


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def eval_dataset(x: np.ndarray, y: np.ndarray, batch_size: int):
    """Batches of (float32 images, labels) in order, for validation; uint8 until the batch is cut."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return _without_autotuning(ds.map(lambda xb, yb: (tf.cast(xb, tf.float32), yb)).prefetch(PREFETCH_BATCHES))


PREFETCH_BATCHES = 4  # batches made ahead of the step that takes them (a fixed buffer: no autotuning, below)


def _without_autotuning(ds):
    """`ds` with tf.data's autotuning off. Its optimisation thread sleeps ever longer between rounds, and deleting
    an iterator waits for it: model.fit's return (which drops its iterator) stalled 0.56-1.4 s in 9 of 35 short
    digits trainings (three side-by-side runs), and a study's configuration sporadically 2-9 s between its last
    epoch and its noise evaluation. Without it (maps then run on every core, the prefetch buffer is fixed) none of
    59 stalled, and an epoch took as long (median 0.643 vs 0.644 s ResNet20, 1.350 vs 1.354 s ResNet32; AMD EPYC,
    2 cores). Same batches."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


# ---------------------------------------------------------------- training input pipeline without TensorFlow
def augment_numpy(images: np.ndarray, rng: np.random.Generator, pad: int, flip: bool) -> np.ndarray:
    """NumPy twin of `augment_batch`: per-example crop of the zero-padded image and random horizontal flip."""
    b, h, w = images.shape[:3]
    if pad:
        padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
        offsets = rng.integers(0, 2 * pad + 1, size=(2, b))
        rows = offsets[0][:, None] + np.arange(h)  # B x H
        cols = offsets[1][:, None] + np.arange(w)  # B x W
        images = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]  # B x H x W x C
    if flip:
        mirror = rng.integers(0, 2, size=b).astype(bool)
        images = images.copy()
        images[mirror] = images[mirror, :, ::-1]
    return images


def _numpy_stream_class():
    import keras

    class NumpyStream(keras.utils.PyDataset):
        """Batches for `model.fit` from NumPy alone; data epoch e is a pure function of (seed, e), like tf.data's.
        A training epoch (one `fit` epoch) is `block_steps` batches of the endless run of data epochs: one data
        epoch by default, or the updates a reference batch size's epoch takes (TrainConfig.budget "steps")."""

        def __init__(self, x, y, batch_size, seed, start_block, augment, block_steps=None):
            super().__init__(workers=1, use_multiprocessing=False, max_queue_size=8)
            self.x, self.y, self.batch_size, self.seed, self.augment = x, y, batch_size, seed, augment
            self.pass_steps = steps_per_epoch(len(x), batch_size)
            self.block_steps = block_steps or self.pass_steps
            self.block = start_block
            self._order = None

        def __len__(self):
            return self.block_steps

        def _epoch_order(self, epoch):
            if self._order is None or self._order[0] != epoch:
                rng = np.random.default_rng([self.seed, epoch])
                self._order = (epoch, rng.permutation(len(self.x)))
            return self._order[1]

        def __getitem__(self, step):
            epoch, step = divmod(self.block * self.block_steps + step, self.pass_steps)  # data epoch, its batch
            idx = np.sort(self._epoch_order(epoch)[step * self.batch_size : (step + 1) * self.batch_size])
            xb = self.x[idx]
            pad, flip = self.augment
            if pad or flip:
                xb = augment_numpy(xb, np.random.default_rng([self.seed, epoch, step, 1]), pad, flip)
            return xb.astype(np.float32), self.y[idx]

        def on_epoch_end(self):
            self.block += 1

    return NumpyStream


def pipeline_kind() -> str:
    """'tf' (tf.data) under the TensorFlow backend, else 'numpy' (no TensorFlow); LRNOISE_PIPELINE overrides."""
    chosen = os.environ.get("LRNOISE_PIPELINE")
    if chosen in ("tf", "numpy"):
        return chosen
    import keras

    return "tf" if keras.backend.backend() == "tensorflow" else "numpy"


def training_stream(
    x,
    y,
    batch_size: int,
    seed: int,
    start_epoch: int = 0,
    augment=(0, False),
    end_epoch: int | None = None,
    block_steps: int | None = None,
):
    """(stream for model.fit, steps_per_epoch to pass or None) from whichever pipeline is in use; training epochs
    start_epoch .. end_epoch - 1 (the NumPy stream serves whatever epochs fit asks for). A training epoch is one
    pass over the data, or `block_steps` batches of the endless run of passes (a budget in optimizer steps: the
    batches are the same, only where an epoch ends moves)."""
    if pipeline_kind() == "tf":
        pass_steps = steps_per_epoch(len(x), batch_size)
        block = block_steps or pass_steps
        first_data_epoch, skip = divmod(start_epoch * block, pass_steps)
        end = None if end_epoch is None else -(-end_epoch * block // pass_steps)
        return train_pipeline(x, y, batch_size, seed, first_data_epoch, augment, end, skip), block
    return _numpy_stream_class()(x, y, batch_size, seed, start_epoch, augment, block_steps), None


def validation_data(x, y, batch_size: int):
    """What model.fit takes as validation_data: a tf.data stream, or (float32 array, labels)."""
    if pipeline_kind() == "tf":
        return eval_dataset(x, y, batch_size)
    return x.astype(np.float32), y
