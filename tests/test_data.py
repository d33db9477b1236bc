"""Datasets: official-format CIFAR archives made here, checksums, the restricted unpickler, augmentation."""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from lrnoise import config
from lrnoise.data import archives, loading, pipelines
from lrnoise.errors import LrnoiseError


def _batch_bytes(images, labels, label_key):
    """A batch as the official files store it: dict of bytes keys, N x 3072 channel-major uint8, protocol 2."""
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return pickle.dumps(
        {b"batch_label": b"made by a test", label_key: list(map(int, labels)), b"data": flat}, protocol=2
    )


def make_cifar(tmp_path, name, n_per_file=3, extracted=False):
    """Writes a small official-format archive (or extracted folder); returns (path, x_train, y_train, x_test,
    y_test)."""
    spec = archives.CIFAR[name]
    rng = np.random.RandomState(1)
    files, xs, ys = {}, [], []
    for f in spec.train_files:
        x = rng.randint(0, 256, (n_per_file, 32, 32, 3)).astype(np.uint8)
        y = rng.randint(0, spec.num_classes, n_per_file)
        files[f] = _batch_bytes(x, y, spec.label_key)
        xs.append(x), ys.append(y)
    x_test = rng.randint(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    y_test = rng.randint(0, spec.num_classes, 4)
    files[spec.test_file] = _batch_bytes(x_test, y_test, spec.label_key)
    if extracted:
        folder = tmp_path / spec.folder
        folder.mkdir()
        for f, raw in files.items():
            (folder / f).write_bytes(raw)
        path = folder
    else:
        path = tmp_path / spec.archive
        with tarfile.open(path, "w:gz") as tar:
            for f, raw in files.items():
                info = tarfile.TarInfo(f"{spec.folder}/{f}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    return path, np.concatenate(xs), np.concatenate(ys), x_test, y_test


def _trust(monkeypatch, name, path):
    """Makes the test archive's MD5 the 'official' one for this test."""
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(
        archives.CIFAR, name, archives.CIFAR[name].__class__(**{**archives.CIFAR[name].__dict__, "md5": md5})
    )


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_official_archive_reads_back_exact(tmp_path, monkeypatch, name):
    path, x_train, y_train, x_test, y_test = make_cifar(tmp_path, name)
    _trust(monkeypatch, name, path)
    ds = loading.load(name, data_dir=tmp_path, val_fraction=0.0)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == x_train.shape
    np.testing.assert_array_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.x_test, x_test)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.num_classes == archives.CIFAR[name].num_classes


def test_extracted_folder_reads_back_exact(tmp_path):
    _, x_train, y_train, x_test, y_test = make_cifar(tmp_path, "cifar10", extracted=True)
    ds = loading.load("cifar10", data_dir=tmp_path, val_fraction=0.2, seed=3)
    # validation comes out of the training set: together they are the training set
    got = np.concatenate([ds.x_train, ds.x_val])
    assert len(ds.x_val) == 3 and sorted(map(bytes, got)) == sorted(map(bytes, x_train))
    np.testing.assert_array_equal(ds.x_test, x_test)
    np.testing.assert_array_equal(ds.y_test, y_test)


def test_wrong_checksum_is_refused(tmp_path):
    make_cifar(tmp_path, "cifar10")  # our archive is not the official one: its MD5 differs
    with pytest.raises(LrnoiseError, match="checksum mismatch"):
        loading.load("cifar10", data_dir=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    payload = pickle.dumps({b"data": evil, b"labels": [1]}, protocol=2)
    for f in (*archives.CIFAR["cifar10"].train_files, "test_batch"):
        (folder / f).write_bytes(payload)
    with pytest.raises(LrnoiseError, match="refusing to unpickle"):
        loading.load("cifar10", data_dir=tmp_path)
    assert not marker.exists()
    assert pickle.loads(payload) is not None and marker.exists()  # the same bytes do run code unrestricted


def test_missing_data_dir_and_unknown_dataset(tmp_path):
    with pytest.raises(LrnoiseError, match="does not exist"):
        loading.load("cifar10", data_dir=tmp_path / "nope")
    with pytest.raises(LrnoiseError, match="digits, cifar10, cifar100"):
        loading.load("mnist")


def test_digits_split_is_fixed_and_raw():
    a, b = loading.load("digits", seed=0), loading.load("digits", seed=1)
    np.testing.assert_array_equal(a.x_test, b.x_test)  # test set independent of the seed
    assert not np.array_equal(a.y_val, b.y_val)  # the validation split follows the seed
    assert a.x_train.dtype == np.uint8 and a.x_train.shape[1:] == (8, 8, 1) and a.x_train.max() == 16
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797


def test_digits_has_the_size_the_configuration_checks_against():
    ds, size = loading.load("digits", val_fraction=0.1), config.DATASET_SIZES["digits"]
    assert (len(ds.x_train) + len(ds.x_val), len(ds.x_test)) == (size.train, size.test)


def test_a_stratified_subset_keeps_each_class_share_and_follows_its_seed():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])  # shares 50 %, 30 %, 15 %, 5 %
    picked = loading.stratified_subset(labels, 10, seed=3)
    assert len(picked) == len(set(picked)) == 10 and np.all(np.diff(picked) > 0)
    assert np.bincount(labels[picked], minlength=4).tolist() == [5, 3, 2, 0]  # 1.5 and 0.5 tie: the lower class
    np.testing.assert_array_equal(picked, loading.stratified_subset(labels, 10, seed=3))
    assert not np.array_equal(picked, loading.stratified_subset(labels, 10, seed=4))
    seven = loading.stratified_subset(labels, 7, seed=0)  # 3.5, 2.1, 1.05, 0.35: the largest remainder rounds up
    assert np.bincount(labels[seven], minlength=4).tolist() == [4, 2, 1, 0]
    with pytest.raises(LrnoiseError, match="a subset of 101 images cannot be drawn from 100"):
        loading.stratified_subset(labels, 101, seed=0)


def test_subsets_of_training_images_follow_the_seed_and_the_test_subset_does_not():
    a = loading.load("digits", seed=0, train_examples=500, test_examples=100)
    b = loading.load("digits", seed=1, train_examples=500, test_examples=100)
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == (450, 50, 100)  # the validation split is of the 500
    np.testing.assert_array_equal(a.x_test, b.x_test)  # every seed is scored on the same test images
    shares = np.bincount(loading.load("digits").y_test) * 100 / 359  # each class's share of the whole test set
    assert abs(np.bincount(a.y_test, minlength=10) - shares).max() < 1  # stratified: each class its share
    assert not np.array_equal(a.x_train, b.x_train)  # the training subset is drawn from the seed
    whole = loading.load("digits", seed=0)
    rows = {row.tobytes() for row in np.concatenate([whole.x_train, whole.x_val])}
    assert all(row.tobytes() in rows for row in a.x_train)  # drawn from the training images, never the test ones


def _images(b=16, h=6, w=5):
    return np.arange(b * h * w * 2, dtype=np.int32).reshape(b, h, w, 2) % 251


def test_augment_eager_equals_tf_data():
    x = _images()
    seed = tf.constant([7, 11], tf.int64)
    eager = pipelines.augment_batch(tf.constant(x), seed, 2, True).numpy()
    ds = tf.data.Dataset.from_tensors(x).map(lambda b: pipelines.augment_batch(b, seed, 2, True))
    graph = next(iter(ds)).numpy()
    np.testing.assert_array_equal(eager, graph)


def test_augment_crops_each_image_on_its_own():
    x = _images(b=64)
    out = pipelines.augment_batch(tf.constant(x), tf.constant([1, 2], tf.int64), 2, True).numpy()
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    found = set()
    for i in range(len(x)):  # each output is one window of its padded image, possibly mirrored
        hits = [
            (r, c, f)
            for r in range(5)
            for c in range(5)
            for f in (0, 1)
            if np.array_equal(
                out[i], (padded[i, r : r + 6, c : c + 5][:, ::-1] if f else padded[i, r : r + 6, c : c + 5])
            )
        ]
        assert hits, f"image {i} is not a crop of its padded self"
        found.add(hits[0])
    assert len(found) > 10  # offsets and flips differ between images of one batch


def test_pipeline_is_a_function_of_seed_and_epoch():
    x = _images(b=20)
    y = np.arange(20)
    steps = pipelines.steps_per_epoch(20, 8)  # 3 batches: 8, 8, 4

    def take(start, n, seed=0):
        it = iter(pipelines.train_pipeline(x, y, 8, seed, start_epoch=start, augment=(1, True)))
        return [next(it) for _ in range(n)]

    full = take(0, 2 * steps)
    resumed = take(1, steps)
    for a, b in zip(full[steps:], resumed):  # epoch 1 replays exactly after a resume
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert full[0][0].dtype == tf.float32
    assert sorted(np.concatenate([b[1].numpy() for b in full[:steps]])) == list(range(20))  # a permutation
    assert not np.array_equal(full[0][1].numpy(), full[steps][1].numpy())  # reshuffled each epoch
    assert not np.array_equal(take(0, 1, seed=1)[0][1].numpy(), full[0][1].numpy())
    ending = list(pipelines.train_pipeline(x, y, 8, 0, start_epoch=1, augment=(1, True), end_epoch=2))
    assert len(ending) == steps  # epochs start_epoch .. end_epoch - 1, then the stream ends
    for a, b in zip(resumed, ending):  # the same batches as the endless stream's
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


@pytest.mark.parametrize("pipeline", ["tf", "numpy"])
def test_an_epoch_of_a_steps_budget_is_a_block_of_the_same_endless_batches(pipeline, monkeypatch):
    """budget "steps": a training epoch is `block_steps` batches cut from the same run of data epochs as the
    epochs budget draws, and a resume at any block continues it exactly (also inside a data epoch)."""
    monkeypatch.setenv("LRNOISE_PIPELINE", pipeline)
    x, y = _images(b=20), np.arange(20)  # 3 batches of 8, 8, 4 per data epoch

    def blocks(start, count, block_steps):
        stream, steps = pipelines.training_stream(x, y, 8, 0, start, (1, True), start + count, block_steps)
        if pipeline == "tf":
            it = iter(stream)
            return [[tuple(np.asarray(t) for t in next(it)) for _ in range(steps)] for _ in range(count)]
        out = []
        for _ in range(count):
            out.append([tuple(np.asarray(t) for t in stream[i]) for i in range(len(stream))])
            stream.on_epoch_end()
        return out

    passes = [batch for block in blocks(0, 3, None) for batch in block]  # 3 data epochs = 9 batches
    by_two = blocks(0, 4, 2)  # 4 blocks of 2 batches: the first 8 of the same 9
    assert [len(b) for b in by_two] == [2, 2, 2, 2]
    for a, b in zip(passes, [batch for block in by_two for batch in block]):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    resumed = blocks(1, 3, 2)  # from block 1: batch 2 of data epoch 0 on
    for a, b in zip(passes[2:], [batch for block in resumed for batch in block]):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_streams_do_not_autotune():
    """tf.data's autotuning thread made deleting an iterator (at the end of every model.fit) wait up to seconds
    (pipelines._without_autotuning): the training and validation streams run without it."""
    x, y = _images(b=20), np.arange(20)
    for stream in (
        pipelines.train_pipeline(x, y, 8, 0, augment=(1, True), end_epoch=1),
        pipelines.eval_dataset(x, y, 8),
    ):
        assert stream.options().autotune.enabled is False
        assert sum(len(b[1]) for b in stream) == 20  # and still serve every example
