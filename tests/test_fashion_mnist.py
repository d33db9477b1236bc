"""Fashion-MNIST offline: the IDX format read and checked on small files the tests write (magic number, shape, a
truncated or corrupt file, a file that is not the official one: each one line), where the four files are looked
for, the one-line refusal naming the three ways to get them, and the real files loaded when the system package
`dataset-fashion-mnist` is installed."""

import dataclasses
import gzip
import hashlib
import struct

import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

from lrnoise import names
from lrnoise.cli import app
from lrnoise.data import idx, loading, sources
from lrnoise.errors import LrnoiseError
from lrnoise.store import run_logging


def idx_bytes(values: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic (0, 0, 0x08, rank), the big-endian dimensions, the values."""
    return bytes([0, 0, idx.UBYTE, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape) + values.tobytes()


def write_fashion(folder, n_train=12, n_test=6) -> dict:
    """Four small gzip IDX files in `folder` like Fashion-MNIST's; returns FILES with their sizes and hashes."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % 10,
    }
    files = {}
    for key, values in arrays.items():
        data = idx_bytes(values)
        (folder / idx.FILES[key].name).write_bytes(gzip.compress(data))
        files[key] = dataclasses.replace(idx.FILES[key], size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return files


def test_the_four_files_become_images_with_one_channel_and_integer_labels(tmp_path):
    files = write_fashion(tmp_path)
    (x_train, y_train, x_test, y_test), source = idx.load_fashion_mnist(tmp_path, files)
    assert x_train.shape == (12, 28, 28, 1) and x_test.shape == (6, 28, 28, 1) and x_train.dtype == np.uint8
    assert y_train.tolist() == [i % 10 for i in range(12)] and y_test.dtype == np.int64 and source == str(tmp_path)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\0\0\x09\x01" + struct.pack(">I", 2) + b"ab", "no IDX file of unsigned bytes of rank 1"),  # type 0x09
        (b"\0\0\x08\x03" + struct.pack(">I", 2) + b"ab", "no IDX file of unsigned bytes of rank 1"),  # rank 3
        (b"\0\0\x08", "no IDX file"),  # shorter than its header
        (b"\0\0\x08\x01" + struct.pack(">I", 5) + b"abc", r"truncated: dimensions \(5,\) need 5 values"),
    ],
)
def test_a_malformed_idx_file_is_refused_in_one_line(data, message):
    with pytest.raises(LrnoiseError, match=message) as refused:
        idx.parse(data, 1, "labels")
    assert "\n" not in str(refused.value)


def test_a_corrupt_gzip_or_another_file_than_the_official_one_is_refused(tmp_path):
    files = write_fashion(tmp_path)
    labels = tmp_path / idx.FILES["y_test"].name
    labels.write_bytes(b"not gzip at all")
    with pytest.raises(LrnoiseError, match="is not a readable gzip file"):
        idx.read(labels, files["y_test"])
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(6, np.uint8))))  # well formed, but not these labels
    with pytest.raises(LrnoiseError, match="another SHA-256 than the official t10k-labels-idx1-ubyte.gz"):
        idx.read(labels, files["y_test"])
    with pytest.raises(LrnoiseError, match="another SHA-256"):  # the real checksums: small files are not the data
        idx.read(tmp_path / idx.FILES["x_train"].name, idx.FILES["x_train"])


def test_the_files_are_looked_for_in_the_data_dir_only_when_one_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert idx.folders(tmp_path) == [tmp_path]
    assert idx.folders(None) == [tmp_path / "keras" / "datasets" / "fashion-mnist", idx.SYSTEM_FOLDER]
    write_fashion(tmp_path)
    assert idx.find(tmp_path) == tmp_path and sources.require([idx.FASHION_MNIST], tmp_path) == {
        idx.FASHION_MNIST: tmp_path
    }
    (tmp_path / idx.FILES["y_train"].name).unlink()
    with pytest.raises(LrnoiseError) as refused:
        sources.require(["digits", idx.FASHION_MNIST], tmp_path)
    message = str(refused.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message
    assert "keras.datasets.fashion_mnist.load_data()" in message and "--data-dir" in message


def test_a_missing_dataset_is_one_line_with_status_2_before_any_run(store, tmp_path):
    result = CliRunner().invoke(app, ["train", "--dataset", "fashion_mnist", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert (
        "apt-get install dataset-fashion-mnist" in result.output
        and mlflow.search_runs(search_all_experiments=True).empty
    )


@pytest.mark.e2e
@pytest.mark.skipif(
    idx.find(None) is None, reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
)
def test_the_real_files_load_offline_checked_against_the_official_contents():
    ds = loading.load(idx.FASHION_MNIST)
    assert (len(ds.x_train) + len(ds.x_val), len(ds.x_test), ds.input_shape) == (60000, 10000, (28, 28, 1))
    assert ds.num_classes == 10 and sorted(np.unique(ds.y_test)) == list(range(10))
    assert ds.source == str(idx.find(None))  # logged as the dataset input's source


@pytest.mark.e2e
@pytest.mark.skipif(
    idx.find(None) is None, reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
)
def test_train_and_noise_eval_on_subsets_of_the_real_files_offline(store):
    """`lrnoise train` on a stratified subset of the system package's files (no network), its dataset inputs the
    subset's, and `noise-eval` of that run scored on the same test subset."""
    train = CliRunner().invoke(
        app,
        [
            *("train", "--dataset", "fashion_mnist", "--model", "resnet8", "--epochs", "1", "--batch-size", "50"),
            *("--train-examples", "500", "--test-examples", "200", "--grad-noise-batches", "0", "--patience", "0"),
        ],
    )
    assert train.exit_code == 0, train.output
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert (run.data.params["train_examples"], run.data.params["test_examples"]) == ("500", "200")
    assert run.info.run_name.startswith("fashion_mnist-n500-t200-resnet8-")
    data = loading.load(idx.FASHION_MNIST, val_fraction=0.1, seed=0, train_examples=500, test_examples=200)
    used = {i.tags[0].value: (i.dataset.name, i.dataset.digest, i.dataset.source) for i in run.inputs.dataset_inputs}
    assert str(idx.find(None)) in used["train"][2]  # the folder the images were read from
    assert used["train"][:2] == ("fashion_mnist", run_logging.dataset_digest(data.x_train, data.y_train))
    assert used["test"][:2] == ("fashion_mnist", run_logging.dataset_digest(data.x_test, data.y_test))
    assert len(data.x_test) == 200 and np.bincount(data.y_test).tolist() == [20] * 10

    evaluated = CliRunner().invoke(app, ["noise-eval", "--run-id", run.info.run_id, "--levels", "0.1", "--trials", "1"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "(200 test images)" in evaluated.output
    child = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`{names.KIND}` = 'noise_eval'", output_format="list"
    )[0]
    assert [i.dataset.digest for i in child.inputs.dataset_inputs] == [used["test"][1]]
