"""Noise-evaluation speed on ResNet20 with CIFAR-shaped inputs, all measured side by side in this run:

- seconds per noisy draw (lrnoise: assign noise in place + compiled predict) and its ratio to one clean pass;
- speed-up over the naive loop (clone the model, set_weights with numpy noise, compile, model.evaluate).
Targets (issue 3): draw <= 1.10x a clean pass; >= 1.4x faster than naive with 10,000 inputs, >= 3x with 1,000.
"""
import sys

import _common  # noqa: F401  (environment first)
import keras
import numpy as np

from lrnoise import models, noise


def naive_draw(model, x, y, eta, rng):
    """The pile-of-scripts way: a fresh copy per draw, noise from numpy on every weight, compile, evaluate."""
    clone = keras.models.clone_model(model)
    clone.set_weights([w + rng.normal(0, eta * w.std(), w.shape).astype(w.dtype) if w.ndim else w
                       for w in model.get_weights()])
    clone.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return clone.evaluate(x, y, batch_size=1000, verbose=0)[1]


def measure(n, repeats):
    x, y = _common.cifar_like(n)
    model = models.resnet(20, 10, (32, 32, 3))
    evaluator = models.Evaluator(model, x, y, batch_size=1000)
    injector = noise.Injector(model)
    counter = iter(range(10 ** 6))

    clean = _common.best_of(evaluator, repeats)
    ours = _common.best_of(lambda: noise.noisy_accuracy(evaluator, injector, 0.1, 0, next(counter)), repeats)
    rng = np.random.default_rng(0)
    xf = x.astype(np.float32)
    naive = _common.best_of(lambda: naive_draw(model, xf, y, 0.1, rng), repeats)
    return clean, ours, naive


def main(repeats=3):
    clean10k, draw10k, naive10k = measure(10_000, repeats)
    clean1k, draw1k, naive1k = measure(1_000, repeats * 3)
    values = {
        "noise_seconds_per_draw": round(draw10k, 3),
        "noise_clean_pass_seconds": round(clean10k, 3),
        "noise_draw_vs_clean_pass": round(draw10k / clean10k, 3),
        "noise_naive_seconds_per_draw": round(naive10k, 3),
        "noise_speedup_vs_naive": round(naive10k / draw10k, 2),
        "noise_draw_vs_clean_pass_1k": round(draw1k / clean1k, 3),
        "noise_speedup_vs_naive_1k": round(naive1k / draw1k, 2),
    }
    _common.record(values)
    return values


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
