"""GPU check without TensorFlow or MLflow: ResNet20 on synthetic CIFAR-shaped data for a few epochs (NumPy
pipeline with augmentation), then a noise evaluation, printing images/s, draws/s and the device used.
Run through gpu_check.sh on a machine with an NVIDIA GPU and PyTorch (KERAS_BACKEND=torch) or JAX."""
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("LRNOISE_PIPELINE", "numpy")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lrnoise import data, models, noise  # noqa: E402


def device_report() -> str:
    backend = keras.backend.backend()
    if backend == "torch":
        import torch
        used = torch.cuda.is_available()
        return f"torch {torch.__version__}, cuda available: {used}" + (
            f", device {torch.cuda.get_device_name(0)}" if used else "")
    if backend == "jax":
        import jax
        return f"jax {jax.__version__}, devices: {jax.devices()}"
    return f"backend {backend}"


def main(n=int(os.environ.get("GPU_CHECK_N", 50_000)), epochs=int(os.environ.get("GPU_CHECK_EPOCHS", 3)),
         batch_size=int(os.environ.get("GPU_CHECK_BATCH", 256)), trials=int(os.environ.get("GPU_CHECK_TRIALS", 5))):
    print(device_report(), flush=True)
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.randint(0, 10, n)
    x_test, y_test = x[:10_000], y[:10_000]
    mean, var = models.channel_stats(x)
    model = models.resnet(20, 10, (32, 32, 3), mean=mean, variance=var)
    model.compile(keras.optimizers.Adam(0.001), "sparse_categorical_crossentropy", metrics=["accuracy"])
    variable = model.trainable_weights[0].value
    print(f"weights live on: {getattr(variable, 'device', getattr(variable, 'devices', lambda: '?'))}", flush=True)
    stream, _ = data.training_stream(x, y, batch_size, 0, augment=(4, True))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
            print(f"epoch {epoch + 1}: {n / times[-1]:.0f} images/s  loss {logs['loss']:.3f}", flush=True)

    model.fit(stream, epochs=epochs, verbose=0, callbacks=[Timer()])
    steady = float(np.median(times[1:])) if len(times) > 1 else times[0]
    evaluator = models.Evaluator(model, x_test, y_test, batch_size=2500)
    injector = noise.Injector(model)
    evaluator()
    start = time.perf_counter()
    for trial in range(trials):
        noise.noisy_accuracy(evaluator, injector, 0.1, 0, trial)
    per_draw = (time.perf_counter() - start) / trials
    start = time.perf_counter()
    for _ in range(trials):
        evaluator()
    clean = (time.perf_counter() - start) / trials
    print(f"RESULT train_images_per_second {n / steady:.0f}")
    print(f"RESULT noise_draws_per_second {1 / per_draw:.2f} ({len(x_test):,} images each; clean pass {clean:.3f}s, "
          f"draw/clean {per_draw / clean:.3f})")
    print(f"RESULT {device_report()}")


if __name__ == "__main__":
    main()
