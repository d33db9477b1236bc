"""Noise-evaluation speed on ResNet20 with CIFAR-shaped inputs, all measured side by side in this run:

- seconds per noisy draw with the paper's configuration (noise_config.PAPER: additive, eta = 10 %, every trainable
  tensor; lrnoise: draw from the injector + load into the folded evaluator + compiled predict) and its ratio to
  one clean pass;
- pcm_draw_vs_additive_draw: seconds per draw with NoiseConfig("pcm") (its defaults: kernels only, t = 1 day
  here) / seconds per draw with the paper's additive configuration, same model and inputs. Clean pass, additive
  and PCM draws are timed in alternating rounds (best of each), so load changes hit all three alike;
- speed-up over the naive loop (clone the model, set_weights with numpy noise, compile, model.evaluate).
Targets: draw <= 1.10x a clean pass; PCM draw <= 1.25x an additive draw; >= 1.4x faster than naive with
10,000 inputs, >= 3x with 1,000. `python noise_eval.py [repeats]`; LRNOISE_BENCH_QUICK=1: tiny sizes.
"""

import sys

import keras
import numpy as np

from lrnoise.noise import injection, noise_config, scoring
from lrnoise.training import networks

import _common  # noqa: F401  (environment first)

PAPER_ETA = 0.1  # the additive level timed (10 %)
PCM_T = 86400.0  # the PCM level timed: one day after programming (s)


def naive_draw(model, x, y, eta, rng):
    """The pile-of-scripts way: a fresh copy per draw, noise from numpy on every weight, compile, evaluate."""
    clone = keras.models.clone_model(model)
    clone.set_weights(
        [w + rng.normal(0, eta * w.std(), w.shape).astype(w.dtype) if w.ndim else w for w in model.get_weights()]
    )
    clone.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return clone.evaluate(x, y, batch_size=1000, verbose=0)[1]


def draw_function(config: noise_config.NoiseConfig, model, evaluator, level: float):
    """() -> (accuracy, nonfinite): one draw of `config` at `level`, a new trial (new noise) per call."""
    injector = injection.injector_for(config, model, evaluator)
    trials = iter(range(10**9))
    return lambda: injection.noisy_accuracy(
        evaluator, injector, level, config.seed, next(trials), folded=config.fold_bn
    )


def measure(n, repeats, with_pcm):
    """{name: best seconds} for a clean pass, an additive draw, [a PCM draw] and a naive draw on n inputs."""
    x, y = _common.cifar_like(n)
    model = networks.resnet(20, 10, (32, 32, 3))
    evaluator = scoring.Evaluator(model, x, y, batch_size=1000)
    timed = {"clean": evaluator, "additive": draw_function(noise_config.PAPER, model, evaluator, PAPER_ETA)}
    if with_pcm:
        timed["pcm"] = draw_function(noise_config.NoiseConfig("pcm"), model, evaluator, PCM_T)
    seconds = _common.best_of_each(timed, repeats)
    rng = np.random.default_rng(0)
    xf = x.astype(np.float32)
    seconds["naive"] = _common.best_of(lambda: naive_draw(model, xf, y, PAPER_ETA, rng), repeats)
    return seconds


def main(repeats=3):
    big, small = (1_000, 200) if _common.quick() else (10_000, 1_000)
    t10k = measure(big, repeats, with_pcm=True)
    t1k = measure(small, repeats * 3, with_pcm=False)
    values = {
        "noise_seconds_per_draw": round(t10k["additive"], 3),
        "noise_clean_pass_seconds": round(t10k["clean"], 3),
        "noise_draw_vs_clean_pass": round(t10k["additive"] / t10k["clean"], 3),
        "pcm_seconds_per_draw": round(t10k["pcm"], 3),
        "pcm_draw_vs_additive_draw": round(t10k["pcm"] / t10k["additive"], 3),
        "noise_naive_seconds_per_draw": round(t10k["naive"], 3),
        "noise_speedup_vs_naive": round(t10k["naive"] / t10k["additive"], 2),
        "noise_draw_vs_clean_pass_1k": round(t1k["additive"] / t1k["clean"], 3),
        "noise_speedup_vs_naive_1k": round(t1k["naive"] / t1k["additive"], 2),
    }
    _common.record(values)
    return values


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else (1 if _common.quick() else 3))
