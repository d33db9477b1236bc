"""GPU check without TensorFlow or MLflow: ResNet20 on synthetic CIFAR-shaped data for a few epochs (NumPy
pipeline with augmentation, the per-epoch gradient-noise measurement on), then one timed noisy draw per noise
model (additive, multiplicative, pcm; their default targets) and a complete noise evaluation with its eq. 7-9
summary (PCM, 2 draws per level), printing images/s, seconds per draw and the device used.
The report step is not part of it: it reads the MLflow store (and runs on the CPU anyway).
Run through gpu_check.sh on a machine with an NVIDIA GPU and PyTorch (KERAS_BACKEND=torch) or JAX.
Sizes: GPU_CHECK_N (training images), GPU_CHECK_EPOCHS, GPU_CHECK_BATCH, GPU_CHECK_TRIALS (draws timed per model).
"""

import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("LRNOISE_PIPELINE", "numpy")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lrnoise.data import pipelines  # noqa: E402
from lrnoise.noise import injection, noise_config, physics, scoring  # noqa: E402
from lrnoise.training import gradnoise, networks  # noqa: E402

GRAD_NOISE_BATCHES = 8  # train.Execution's default K
LR = 0.001


def device_report() -> str:
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        used = torch.cuda.is_available()
        return f"torch {torch.__version__}, cuda available: {used}" + (
            f", device {torch.cuda.get_device_name(0)}" if used else ""
        )
    if backend == "jax":
        import jax

        return f"jax {jax.__version__}, devices: {jax.devices()}"
    return f"backend {backend}"


def synchronize() -> None:
    """Waits for queued GPU work (torch launches asynchronously) so that wall times are complete."""
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


class TimedGradNoise(gradnoise.GradNoiseCallback):
    """The training path's gradient-noise callback, with each epoch's measurement timed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = []

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        synchronize()
        self.seconds.append(time.perf_counter() - start)


def middle_level(config: noise_config.NoiseConfig) -> float:
    """A representative level of the configuration's defaults (eta 5 % ... ; pcm: 1 day)."""
    return config.levels[len(config.levels) // 2]


def time_draws(config: noise_config.NoiseConfig, model, evaluator, trials: int) -> float:
    """Seconds per noisy draw (after one warm-up draw) of `config` at its middle level."""
    injector = injection.injector_for(config, model, evaluator)
    level = middle_level(config)
    injection.noisy_accuracy(evaluator, injector, level, config.seed, 0)
    synchronize()
    start = time.perf_counter()
    for trial in range(1, trials + 1):
        injection.noisy_accuracy(evaluator, injector, level, config.seed, trial)
    synchronize()
    return (time.perf_counter() - start) / trials


def main(
    n=int(os.environ.get("GPU_CHECK_N", 50_000)),
    epochs=int(os.environ.get("GPU_CHECK_EPOCHS", 3)),
    batch_size=int(os.environ.get("GPU_CHECK_BATCH", 256)),
    trials=int(os.environ.get("GPU_CHECK_TRIALS", 5)),
):
    print(device_report(), flush=True)
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.randint(0, 10, n)
    x_test, y_test = x[:10_000], y[:10_000]
    mean, var = networks.channel_stats(x)
    model = networks.resnet(20, 10, (32, 32, 3), mean=mean, variance=var)
    model.compile(keras.optimizers.Adam(LR), "sparse_categorical_crossentropy", metrics=["accuracy"])
    variable = model.trainable_weights[0].value
    print(f"weights live on: {getattr(variable, 'device', getattr(variable, 'devices', lambda: '?'))}", flush=True)
    stream, _ = pipelines.training_stream(x, y, batch_size, 0, augment=(4, True))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # after the gradient-noise callback: its time included
            times.append(time.perf_counter() - self.start)
            print(
                f"epoch {epoch + 1}: {n / times[-1]:.0f} images/s  loss {logs['loss']:.3f}  "
                f"grad noise {grad_noise.seconds[-1]:.2f}s power {grad_noise.history[-1]['power']:.3g}",
                flush=True,
            )

    grad_noise = TimedGradNoise(x, y, batch_size, GRAD_NOISE_BATCHES, 0, LR, lambda metrics, step: None)
    model.fit(stream, epochs=epochs, verbose=0, callbacks=[grad_noise, Timer()])
    steady = float(np.median(times[1:])) if len(times) > 1 else times[0]
    steady_grad_noise = float(np.median(grad_noise.seconds[1:] or grad_noise.seconds))

    evaluator = scoring.Evaluator(model, x_test, y_test, batch_size=2500)
    evaluator()
    synchronize()
    start = time.perf_counter()
    for _ in range(trials):
        evaluator()
    synchronize()
    clean = (time.perf_counter() - start) / trials
    per_draw = {
        name: time_draws(noise_config.NoiseConfig(name), model, evaluator, trials) for name in physics.NOISE_MODELS
    }  # additive, multiplicative, pcm

    start = time.perf_counter()
    result = injection.evaluate(model, x_test, y_test, noise_config.NoiseConfig("pcm", trials=2), batch_size=2500)
    evaluation = time.perf_counter() - start

    print(
        f"RESULT train_images_per_second {n / steady:.0f} (epoch with the gradient-noise measurement; "
        f"measurement {steady_grad_noise:.3f}s = {steady_grad_noise / steady:.1%} of the epoch)"
    )
    print(f"RESULT clean_pass_seconds {clean:.3f} ({len(x_test):,} images)")
    for name, seconds in per_draw.items():
        config = noise_config.NoiseConfig(name)
        print(
            f"RESULT {name}_seconds_per_draw {seconds:.3f} ({config.level_name} {middle_level(config):g}, "
            f"targets {config.targets}; draw/clean {seconds / clean:.3f}; "
            f"draw/additive {seconds / per_draw['additive']:.3f})"
        )
    print(
        f"RESULT pcm_evaluation_seconds {evaluation:.1f} ({len(result.draws)} draws; A_avr "
        f"{result.avg_normalized_accuracy:.4f}, {result.nonfinite_draws} non-finite)"
    )
    print(f"RESULT {device_report()}")


if __name__ == "__main__":
    main()
