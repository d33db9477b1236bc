"""Training throughput, measured side by side in one run on CIFAR-shaped synthetic data (ResNet20):

- train_ratio_vs_bare_fit: images/s of lrnoise's real training path (its input pipeline with augmentation,
  validation, per-epoch checkpoint, callbacks and MLflow logging) / images/s of bare `model.fit` on tensors
  already in memory, same model, batch size and optimizer. Target >= 0.90.
- pipeline_ratio: batches/s the input pipeline alone produces (augmentation included) / batches/s the training
  step consumes. Target >= 3.
"""
import os
import sys
import tempfile
import time

import _common
import keras
import numpy as np

from lrnoise import data, tracking
from lrnoise.train import TrainConfig, build_model, train


class EpochTimer(keras.callbacks.Callback):
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
    return data.Dataset("cifar10", 10, x, y, xv, yv, xt, yt)  # named cifar10: CIFAR augmentation


def main(n=4096, batch_size=128, epochs=3):
    ds = synthetic(n)
    config = TrainConfig(dataset="cifar10", model="resnet20", lr=0.001, epochs=epochs, batch_size=batch_size,
                         patience=0)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        tracking.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        ours = EpochTimer()
        train(config, dataset=ds, extra_callbacks=(ours,))
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_model(config, ds)
    bare = EpochTimer()
    x = keras.ops.convert_to_tensor(ds.x_train.astype(np.float32))
    model.fit(x, ds.y_train, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[bare])
    ours_ips = n / float(np.median(ours.times[1:]))  # first epoch includes tracing
    bare_ips = n / float(np.median(bare.times[1:]))
    step_rate = bare_ips / batch_size  # batches/s the step consumes

    stream, tf_steps = data.training_stream(ds.x_train, ds.y_train, batch_size, 0,
                                            augment=data.augmentation_for("cifar10"))
    # tf.data streams are iterated; the NumPy PyDataset is indexed batch by batch
    iterator = iter(stream) if tf_steps else (stream[i % len(stream)] for i in range(10 ** 9))
    steps = data.steps_per_epoch(n, batch_size)
    for _i in range(steps):  # warm-up: one epoch
        next(iterator)
    start = time.perf_counter()
    for _i in range(2 * steps):
        next(iterator)
    pipeline_rate = 2 * steps / (time.perf_counter() - start)
    return _common.record({
        "train_images_per_second": round(ours_ips, 1),
        "bare_fit_images_per_second": round(bare_ips, 1),
        "train_ratio_vs_bare_fit": round(ours_ips / bare_ips, 3),
        "pipeline_batches_per_second": round(pipeline_rate, 1),
        "train_steps_per_second": round(step_rate, 2),
        "pipeline_ratio": round(pipeline_rate / step_rate, 1),
        "pipeline": data.pipeline_kind(),
    })


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
