"""Peak resident memory of a real training run on CIFAR-sized data (50,000 x 32 x 32 x 3 uint8 images):
the whole `lrnoise.training.train` path (pipeline, validation, checkpoint, logging, test accuracy, model logging),
stopped after a few dozen steps since the peak is reached early. Target < 2 GiB: images stay uint8 until
they reach the model (as float32 the training images alone would take 0.57 GiB).
LRNOISE_BENCH_QUICK=1: 5,000 training images and 5 steps (a smoke test only)."""

import os
import subprocess
import sys
import tempfile

import _common

CHILD = r"""
import os, resource, sys
sys.path.insert(0, {bench!r})
import _common, keras
from lrnoise.data import loading
from lrnoise.store import session
from lrnoise.training.train import TrainConfig, train

class StopAfter(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch >= {steps}:
            self.model.stop_training = True

os.chdir({tmp!r})
session.set_tracking_uri("sqlite:///" + {tmp!r} + "/mlflow.db")
x, y = _common.cifar_like({n})
xv, yv = _common.cifar_like({n} // 10, seed=1)
xt, yt = _common.cifar_like({n} // 5, seed=2)
ds = loading.Dataset("cifar10", 10, x, y, xv, yv, xt, yt)
train(TrainConfig(dataset="cifar10", epochs=1, patience=0), dataset=ds, extra_callbacks=(StopAfter(),))
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main():
    with tempfile.TemporaryDirectory() as tmp:
        n, steps = (5_000, 5) if _common.quick() else (50_000, 40)
        code = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), tmp=tmp, n=n, steps=steps)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    peak_kib = int([line for line in out.splitlines() if line.startswith("PEAK_KIB")][-1].split()[1])
    return _common.record({"train_peak_rss_gib": round(peak_kib / 2**20, 3)})


if __name__ == "__main__":
    main()
