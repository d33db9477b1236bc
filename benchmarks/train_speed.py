"""Training throughput, measured side by side in one run on CIFAR-shaped synthetic data (ResNet20, n training
images, batch 128). Three trainings of the same data: lrnoise's training path (input pipeline with augmentation,
validation, per-epoch checkpoint, callbacks, MLflow logging) with the per-epoch gradient-noise measurement at its
default (Execution().grad_noise_batches = K = 8) -> epoch seconds T_gn; the same path without it
(grad_noise_batches = 0) -> T_0; bare `model.fit` on tensors already in memory, same model, batch size and
optimizer -> T_bare. Each T is the median of the steady epochs (all but the first: tracing, compilation).

The measurement costs K forward + backward passes per epoch whatever the epoch's size, so on the benchmark's
small epoch (n = 4096: 32 steps) it weighs ~11x more than on a CIFAR10 epoch (45,000 images after the 10 %
validation split: 352 steps). The targeted figures are therefore stated for a CIFAR10 epoch, from the measured
seconds: with s = 45,000 / n and the measurement's extra seconds per epoch d = T_gn - T_0,

- grad_noise_overhead = (s T_0 + d) / (s T_0): CIFAR10-epoch time with / without the measurement. Target <= 1.05.
- train_ratio_vs_bare_fit = s T_bare / (s T_0 + d): images/s of lrnoise's path, measurement on, / bare fit's, on a
  CIFAR10 epoch. Target >= 0.90. (s T_0 also scales the checkpoint and logging, which are fixed per epoch too:
  conservative for lrnoise.)
- grad_noise_overhead_measured = T_gn / T_0 and train_ratio_vs_bare_fit_measured = T_bare / T_gn: the same
  ratios on the benchmark's own n-image epoch (no target: they depend on n).
- grad_noise_seconds_per_epoch: one gradnoise.estimate (K minibatches, compiled gradient function) timed alone,
  best of 3; a cross-check of d.
- pipeline_ratio: batches/s the input pipeline alone produces (augmentation included) / batches/s the training
  step consumes (1 / T_bare per batch). Target >= 3.

`python train_speed.py [n batch_size epochs]`; LRNOISE_BENCH_QUICK=1 shrinks everything for a smoke test.
"""

import os
import sys
import tempfile
import time

import keras
import numpy as np

from lrnoise.config import Execution, TrainConfig
from lrnoise.data import loading, pipelines
from lrnoise.store import session
from lrnoise.training import gradnoise
from lrnoise.training.build import build_model
from lrnoise.training.train import train

import _common

CIFAR10_TRAIN_IMAGES = 45_000  # 50,000 less the 10 % validation split (build.VAL_FRACTION)


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch. Placed after lrnoise's own callbacks, so an epoch's time includes
    validation, the gradient-noise measurement, the checkpoint and the MLflow logging."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def synthetic(n):
    x, y = _common.cifar_like(n)
    xv, yv = _common.cifar_like(n // 10, seed=1)
    xt, yt = _common.cifar_like(512, seed=2)
    return loading.Dataset("cifar10", 10, x, y, xv, yv, xt, yt)  # named cifar10: CIFAR augmentation


def steady(times: list) -> float:
    """Median epoch seconds without the first epoch (tracing)."""
    return float(np.median(times[1:]))


def timed_train(config: TrainConfig, ds: loading.Dataset, execution: Execution) -> EpochTimer:
    """Epoch times of lrnoise's training path; the timer keeps the trained model (timer.model)."""
    keras.backend.clear_session()
    timer = EpochTimer()
    train(config, dataset=ds, extra_callbacks=(timer,), execution=execution)
    return timer


def grad_noise_seconds(model, ds: loading.Dataset, config: TrainConfig, k: int, repeats: int) -> float:
    """Best-of seconds of one gradient-noise estimate, as the callback makes it after an epoch."""
    gradients = gradnoise.stacked_gradient_function(model)
    return _common.best_of(
        lambda: gradnoise.estimate(
            model,
            ds.x_train,
            ds.y_train,
            config.batch_size,
            k,
            config.seed,
            config.epochs,
            config.lr,
            optimizer=model.optimizer,
            gradients=gradients,
        ),
        repeats,
    )


def bare_fit(config: TrainConfig, ds: loading.Dataset) -> EpochTimer:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_model(config, ds)
    timer = EpochTimer()
    x = keras.ops.convert_to_tensor(ds.x_train.astype(np.float32))
    model.fit(x, ds.y_train, batch_size=config.batch_size, epochs=config.epochs, verbose=0, callbacks=[timer])
    return timer


def pipeline_batches_per_second(ds: loading.Dataset, batch_size: int) -> float:
    stream, tf_steps = pipelines.training_stream(
        ds.x_train, ds.y_train, batch_size, 0, augment=pipelines.augmentation_for("cifar10")
    )
    # tf.data streams are iterated; the NumPy PyDataset is indexed batch by batch
    iterator = iter(stream) if tf_steps else (stream[i % len(stream)] for i in range(10**9))
    steps = pipelines.steps_per_epoch(len(ds.x_train), batch_size)
    for _i in range(steps):  # warm-up: one epoch
        next(iterator)
    start = time.perf_counter()
    for _i in range(2 * steps):
        next(iterator)
    return 2 * steps / (time.perf_counter() - start)


def main(n=4096, batch_size=128, epochs=3):
    ds = synthetic(n)
    config = TrainConfig(
        dataset="cifar10", model="resnet20", lr=0.001, epochs=epochs, batch_size=batch_size, patience=0
    )
    with_noise = Execution()  # the default: gradient noise measured after every epoch
    without_noise = Execution(grad_noise_batches=0)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # checkpoints and artifacts of the throwaway runs
        session.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        ours = timed_train(config, ds, with_noise)
        measurement = grad_noise_seconds(ours.model, ds, config, with_noise.grad_noise_batches, repeats=3)
        plain = timed_train(config, ds, without_noise)
        os.chdir(here)
    bare = bare_fit(config, ds)

    t_gn, t_0, t_bare = steady(ours.times), steady(plain.times), steady(bare.times)
    scale = CIFAR10_TRAIN_IMAGES / n
    extra = t_gn - t_0  # seconds the measurement adds to one epoch
    step_rate = n / t_bare / batch_size  # batches/s the step consumes
    pipeline_rate = pipeline_batches_per_second(ds, batch_size)
    return _common.record(
        {
            "train_images_per_second": round(n / t_gn, 1),
            "train_images_per_second_no_grad_noise": round(n / t_0, 1),
            "bare_fit_images_per_second": round(n / t_bare, 1),
            "train_ratio_vs_bare_fit": round(scale * t_bare / (scale * t_0 + extra), 3),
            "train_ratio_vs_bare_fit_measured": round(t_bare / t_gn, 3),
            "grad_noise_overhead": round((scale * t_0 + extra) / (scale * t_0), 3),
            "grad_noise_overhead_measured": round(t_gn / t_0, 3),
            "grad_noise_seconds_per_epoch": round(measurement, 3),
            "grad_noise_extra_epoch_seconds": round(extra, 3),
            "pipeline_batches_per_second": round(pipeline_rate, 1),
            "train_steps_per_second": round(step_rate, 2),
            "pipeline_ratio": round(pipeline_rate / step_rate, 1),
            "pipeline": pipelines.pipeline_kind(),
        }
    )


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]]
    main(*(sizes or ((512, 128, 2) if _common.quick() else ())))
