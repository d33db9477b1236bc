"""Analog weight noise: the noise configuration, injection into a trained model, and the statistics of eq. 7-9.

For each level (eta for the paper's additive noise, inference time t for PCM) and draw, every targeted weight
tensor is perturbed by the configuration's noise model (`physics.py`), the test accuracy is measured, and
nothing of the model is modified. a^x = mean accuracy over draws (eq. 7), A^x = a^x / a_0 (eq. 8), and
A_avr = mean of A^x over the levels (eq. 9). Pure Keras (keras.ops / keras.random): any backend; no MLflow,
no matplotlib (the tracked command is `noise_eval.py`, the figures live in `figures.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd

from lrnoise.errors import LrnoiseError
from lrnoise.noise import noise_config, physics, scoring, statistics


# ---------------------------------------------------------------- injection
class Injector:
    """Noisy versions of a set of weights. The clean values are held once; a draw returns {path: tensor}
    with noise on the targeted tensors and the clean value elsewhere.

    All targeted tensors are drawn by the noise model in a few ops over their concatenation (`Layout`),
    then split back: nothing is rebuilt or reloaded per draw, and no variable is modified.
    """

    def __init__(self, clean: dict, target_paths: list[str], noise_model: physics.NoiseModel):
        """`clean`: {variable path: tensor} (scoring.weight_values or the folded twin's values)."""
        if not target_paths:
            raise LrnoiseError("the model has no weights in this target set: choose another --targets")
        self.clean, self.targets, self.noise_model = clean, list(target_paths), noise_model
        self.layout = physics.Layout([clean[p] for p in self.targets])
        self.prepared = noise_model.prepare(self.layout)  # per-tensor constants (sigma_w, conductance scale)

    def draw(self, level: float, seed: int) -> dict:
        """One noisy realisation of every targeted tensor, from one seed."""
        flat = self.noise_model.sample(self.prepared, level, int(seed))
        values = dict(self.clean)
        values.update(zip(self.targets, self.layout.split(flat)))
        return values


def injector_for(
    config: noise_config.NoiseConfig, model: keras.Model, evaluator: scoring.Evaluator | None = None
) -> Injector:
    """The injector a configuration needs: over the model's own weights, or (fold_bn) over the BN-folded
    twin's, which only an Evaluator has. Reuses the evaluator's weight snapshot when given."""
    if config.fold_bn:
        if evaluator is None:
            raise ValueError("fold_bn needs the Evaluator whose folded twin gets the noise")
        return Injector(
            evaluator.fold(evaluator.clean),
            [v.path for v in noise_config.TARGETS[config.targets](evaluator.twin)],
            config.model(),
        )
    clean = evaluator.clean if evaluator is not None else scoring.weight_values(model)
    return Injector(clean, [v.path for v in noise_config.TARGETS[config.targets](model)], config.model())


def draw_seed(seed: int, level: float, trial: int) -> int:
    """The seed of draw (seed, level, trial): the same level draws the same noise whatever the list of levels."""
    return int(np.random.SeedSequence([seed, int(round(level * 1e6)), trial]).generate_state(1)[0] % (2**31 - 1))


# ---------------------------------------------------------------- statistics (eq. 7-9)
@dataclass
class NoiseResult:
    baseline_accuracy: float  # a_0
    draws: pd.DataFrame  # one row per draw: level, trial, accuracy, nonfinite
    summary: pd.DataFrame = field(init=False)  # one row per level (see summarize)
    avg_normalized_accuracy: float = field(init=False)  # A_avr (eq. 9)
    nonfinite_draws: int = field(init=False)  # draws whose outputs held NaN / inf (counted as wrong)

    def __post_init__(self):
        self.summary = summarize(self.draws, self.baseline_accuracy)
        self.avg_normalized_accuracy = float(self.summary["normalized_accuracy"].mean())
        self.nonfinite_draws = int(self.draws["nonfinite"].sum()) if "nonfinite" in self.draws else 0


LOGGED_LEVEL_COLUMNS = (
    "accuracy",
    "accuracy_std",
    "accuracy_ci95",
    "normalized_accuracy",
    "normalized_accuracy_ci95",
    "trials",
)  # what is recorded per level


def normalized(accuracy: float, baseline_accuracy: float) -> float:
    """Eq. 8's A = a / a_0; NaN for a model at 0 % clean accuracy (evaluated with --force: nothing to normalise)."""
    return accuracy / baseline_accuracy if baseline_accuracy > 0 else float("nan")


def summarize(draws: pd.DataFrame, baseline_accuracy: float) -> pd.DataFrame:
    """Eq. 7-8 per level from the per-draw accuracies, with spread: std (ddof=1) and 95 % CI half-width."""
    rows = []
    for level, group in draws.groupby("level", sort=False):
        acc = group["accuracy"].to_numpy()
        mean, ci, _ = statistics.mean_ci(acc)  # eq. 7
        std = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
        rows.append(
            {
                "level": level,
                "trials": len(acc),
                "accuracy": mean,
                "accuracy_std": std,
                "accuracy_ci95": ci,
                "normalized_accuracy": normalized(mean, baseline_accuracy),  # eq. 8
                "normalized_accuracy_std": normalized(std, baseline_accuracy),
                "normalized_accuracy_ci95": normalized(ci, baseline_accuracy),
            }
        )
    return pd.DataFrame(rows)


def evaluate(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    config: noise_config.NoiseConfig = noise_config.PAPER,
    batch_size: int = 1000,
    log=print,
    evaluator: scoring.Evaluator | None = None,
) -> NoiseResult:
    """Clean accuracy a_0, then `config.trials` noisy draws per level (or, with trials auto, until the CI is
    tight). The model's weights are never modified. `evaluator`: an Evaluator of `model` on (x, y) made
    before, e.g. the one training measured a_0 with (a study saves setting one up per evaluation)."""
    config.validate()
    if evaluator is None or (evaluator.count, evaluator.batch_size) != (len(y), batch_size):
        evaluator = scoring.Evaluator(model, x, y, batch_size)
    else:
        evaluator.load(evaluator.clean)  # a previous evaluation left its last noisy draw in the twin
    injector = injector_for(config, model, evaluator)
    baseline = evaluator()  # a_0, same evaluation code as every draw
    log(f"baseline_accuracy {baseline:.4f}  ({len(injector.targets)} weight tensors get {config.name} noise)")
    rows = []
    for level in config.levels:
        accs, started, shown = [], time.perf_counter(), time.perf_counter()
        while _more(accs, config):
            accuracy, nonfinite = noisy_accuracy(
                evaluator, injector, level, config.seed, len(accs), folded=config.fold_bn
            )
            accs.append(accuracy)
            rows.append({"level": level, "trial": len(accs) - 1, "accuracy": accuracy, "nonfinite": nonfinite})
            if time.perf_counter() - shown > 10:  # long evaluations show life
                shown = time.perf_counter()
                log(f"  {config.level_name} {level:g}: {len(accs)} draws, running mean accuracy {np.mean(accs):.4f}")
        log(
            f"{config.level_name} {level:g}: {len(accs)} draws  accuracy {np.mean(accs):.4f} +- "
            f"{statistics.ci95(accs):.4f}  normalized {normalized(float(np.mean(accs)), baseline):.4f}  "
            f"({time.perf_counter() - started:.1f}s)"
        )
    return NoiseResult(baseline, pd.DataFrame(rows, columns=["level", "trial", "accuracy", "nonfinite"]))


def noisy_accuracy(
    evaluator: scoring.Evaluator, injector: Injector, level: float, seed: int, trial: int, folded: bool = False
) -> tuple[float, bool]:
    """One draw: noisy weights into the evaluator, (test accuracy, whether any output was non-finite) out.
    eta = 0 of a noise model whose zero level is noise-free gives the clean model, A = 1 exactly."""
    if level == 0 and injector.noise_model.zero_is_clean:
        values = injector.clean
    else:
        values = injector.draw(level, draw_seed(seed, level, trial))
    if folded:
        evaluator.assign(values)
    else:
        evaluator.load(values)
    return evaluator.accuracy()


def _more(accs: list, config: noise_config.NoiseConfig) -> bool:
    if config.trials != "auto":
        return len(accs) < config.trials
    if len(accs) < noise_config.MIN_AUTO_TRIALS:
        return True
    return len(accs) < config.max_trials and statistics.ci95(accs) >= config.ci_target
