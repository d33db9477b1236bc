"""The official CIFAR10/100 archive files: what each holds (CifarSpec, CIFAR, with the official checksums) and how
they are read, in memory and safely: the pickled batches through an unpickler that admits only what they hold, the
tar.gz checked against its MD5 first (md5sum remembers the files it hashed), or the folder it extracts to.
Where the files are found or downloaded is sources.py's; turning them into a Dataset is loading.py's.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
