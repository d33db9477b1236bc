"""The training and evaluation input pipelines: batches of a Dataset's arrays for model.fit, with augmentation.

The input pipeline's TensorFlow code (tf.data) lives here; gradnoise.py has the other TensorFlow-only paths (its
traced gradient functions, each with a backend-neutral fallback). Images stay uint8 NHWC in memory
and are cast to float32 one batch at a time, just before they reach the model (whose first layer normalises).
Two interchangeable training pipelines: tf.data (when TensorFlow is installed) and a NumPy `PyDataset` that
needs no TensorFlow (any Keras backend); `LRNOISE_PIPELINE=numpy|tf` picks one explicitly.
"""

from __future__ import annotations

import os

import numpy as np


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


def numpy_stream_class():
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
    return numpy_stream_class()(x, y, batch_size, seed, start_epoch, augment, block_steps), None


def validation_data(x, y, batch_size: int):
    """What model.fit takes as validation_data: a tf.data stream, or (float32 array, labels)."""
    if pipeline_kind() == "tf":
        return eval_dataset(x, y, batch_size)
    return x.astype(np.float32), y
