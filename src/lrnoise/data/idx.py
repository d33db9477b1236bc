"""Fashion-MNIST's four IDX files (Zalando Research, MIT license): what each holds, where they are looked for, and
how they are read, checked and turned into arrays. The files are gzip-compressed IDX (LeCun's format: a magic
number naming the type and rank, the dimensions, then the values); each is checked against the decompressed
size and SHA-256 measured on the official data (the Debian package `dataset-fashion-mnist` recompresses the gz
files, so the compressed bytes differ between copies; the contents do not).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrnoise.errors import LrnoiseError

FASHION_MNIST = "fashion_mnist"
SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")  # `apt-get install dataset-fashion-mnist`
KERAS_SUBDIR = "fashion-mnist"  # keras.datasets.fashion_mnist caches the same files in <keras home>/datasets/ here
UBYTE = 0x08  # the IDX type code of unsigned bytes


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: its name, rank and, decompressed, its size and SHA-256."""

    name: str
    rank: int  # 3: images N x 28 x 28; 1: labels N
    size: int
    sha256: str


FILES = {
    "x_train": IdxFile(
        "train-images-idx3-ubyte.gz", 3, 47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "y_train": IdxFile(
        "train-labels-idx1-ubyte.gz", 1, 60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "x_test": IdxFile(
        "t10k-images-idx3-ubyte.gz", 3, 7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "y_test": IdxFile(
        "t10k-labels-idx1-ubyte.gz", 1, 10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}
NUM_CLASSES = 10


def keras_folder() -> Path:
    """Where keras.datasets.fashion_mnist keeps the files: $KERAS_HOME/datasets or ~/.keras/datasets."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    return home / "datasets" / KERAS_SUBDIR


def folders(data_dir: str | os.PathLike | None) -> list[Path]:
    """Where the four files are looked for, in order: the data dir when given (only there), else Keras's cache
    folder, then the system package's."""
    return [Path(data_dir)] if data_dir is not None else [keras_folder(), SYSTEM_FOLDER]


def find(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first folder holding all four files, or None."""
    return next((f for f in folders(data_dir) if all((f / spec.name).is_file() for spec in FILES.values())), None)


def missing_message(data_dir: str | os.PathLike | None) -> str:
    """Why Fashion-MNIST is unavailable and the three ways to get it, in one line."""
    where = f"in {data_dir}" if data_dir is not None else f"in {keras_folder()} or {SYSTEM_FOLDER}"
    return (
        f"dataset {FASHION_MNIST} unavailable (its four IDX files are not {where}): `apt-get install "
        f"dataset-fashion-mnist` (offline, from the system's packages), or `python -c \"import keras; "
        f"keras.datasets.fashion_mnist.load_data()\"` (downloads into Keras's cache), or pass --data-dir DIR with "
        f"{', '.join(spec.name for spec in FILES.values())}"
    )


def read(path: Path, spec: IdxFile) -> np.ndarray:
    """The array in one gzip IDX file, after its decompressed size and SHA-256 match `spec` (one-line errors)."""
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise LrnoiseError(f"{path} is not a readable gzip file ({exc}): replace it with the official one") from None
    if len(data) != spec.size or hashlib.sha256(data).hexdigest() != spec.sha256:
        raise LrnoiseError(
            f"{path} holds {len(data)} bytes with another SHA-256 than the official {spec.name} ({spec.size} bytes): "
            "replace it with the official file"
        )
    return parse(data, spec.rank, str(path))


def parse(data: bytes, rank: int, where: str = "IDX data") -> np.ndarray:
    """IDX bytes -> uint8 array: magic (0, 0, type 0x08, rank), `rank` big-endian uint32 dimensions, the values."""
    header = 4 + 4 * rank
    if len(data) < header or data[:2] != b"\0\0" or data[2] != UBYTE or data[3] != rank:
        raise LrnoiseError(f"{where} is no IDX file of unsigned bytes of rank {rank} (its magic number is wrong)")
    shape = struct.unpack(f">{rank}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise LrnoiseError(f"{where} is truncated: dimensions {shape} need {int(np.prod(shape))} values")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(folder: Path, files: dict[str, IdxFile] = FILES) -> tuple[tuple[np.ndarray, ...], str]:
    """(x_train N x 28 x 28 x 1, y_train, x_test, y_test) from the four files in `folder`, and `folder`."""
    arrays = {key: read(folder / spec.name, spec) for key, spec in files.items()}
    x_train, x_test = arrays["x_train"][..., None], arrays["x_test"][..., None]
    for x, y in ((x_train, arrays["y_train"]), (x_test, arrays["y_test"])):
        if len(x) != len(y):
            raise LrnoiseError(f"{folder}: {len(x)} images but {len(y)} labels in one split")
    return (x_train, arrays["y_train"].astype(np.int64), x_test, arrays["y_test"].astype(np.int64)), str(folder)
