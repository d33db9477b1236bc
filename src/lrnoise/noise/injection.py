"""Analog weight noise: the noise configuration, injection into a trained model, and the statistics of eq. 7-9.

For each level (eta for the paper's additive noise, inference time t for PCM) and draw, every targeted weight
tensor is perturbed by the configuration's noise model (`physics.py`), the test accuracy is measured, and
nothing of the model is modified. a^x = mean accuracy over draws (eq. 7), A^x = a^x / a_0 (eq. 8), and
A_avr = mean of A^x over the levels (eq. 9). Pure Keras (keras.ops / keras.random): any backend; no MLflow,
no matplotlib (the tracked command is `noise_eval.py`, the figures live in `figures.py`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields

import keras
import numpy as np
import pandas as pd

from lrnoise.analysis import stats
from lrnoise.errors import LrnoiseError
from lrnoise.noise import physics
from lrnoise.training import networks

PAPER_ETAS = physics.Additive.default_levels  # the paper's noise form factors (1 % ... 40 %)
DEFAULT_TRIALS = 10  # draws per level (the paper repeats but does not say how often)
DEFAULT_CI_TARGET = 0.005  # trials auto: stop when the 95 % CI half-width of a^x is below this (a fraction: 0.5 pp)
DEFAULT_MAX_TRIALS = 100  # trials auto: never more draws than this per level
MIN_AUTO_TRIALS = 3  # trials auto: draws before the CI is trusted


# ---------------------------------------------------------------- which weights get noise
def _is_input_normalization(variable) -> bool:
    return variable.path.startswith(networks.NORMALIZATION_LAYER + "/")


TARGETS = {
    # Every trainable tensor (conv/dense kernels and biases, BN gamma and beta): the values an analog array
    # would store. BN moving statistics and the input normalisation stay clean.
    "trainable": lambda model: [v for v in model.trainable_weights if not _is_input_normalization(v)],
    # Conv and dense matrices only: what sits in crossbars (biases and batch norm stay digital).
    "kernels": lambda model: [v for v in model.trainable_weights if v.path.endswith("kernel")],
    # Every weight of the network, BN moving mean/variance included (input normalisation still excluded).
    "all": lambda model: [v for v in model.weights if not _is_input_normalization(v)],
}


# ---------------------------------------------------------------- the configuration
def level_label(level_name: str, level: float) -> str:
    """How a level is written in names: eta as a percent (0.1 -> '10', 0.025 -> '2.5'), t in readable units
    (1 -> '1s', 3600 -> '1h', 86400 -> '1d', 2592000 -> '30d', 31536000 -> '1y')."""
    if level_name == "eta":
        return f"{round(level * 100, 6):g}"
    for unit, seconds in (("y", 31536000.0), ("d", 86400.0), ("h", 3600.0)):
        if level >= seconds and (level / seconds) == round(level / seconds, 3):
            return f"{level / seconds:g}{unit}"
    return f"{level:g}s"


PRESET_NAMES = {"paper": "additive-paper"}  # the paper's configuration: its tables keep today's metric names


@dataclass(frozen=True)
class NoiseConfig:
    """One noise evaluation: what is measured (noise model, levels, targets, BN folding, the model's options)
    and how precisely (trials, or auto with ci_target / max_trials; seed). Unset fields take the noise
    model's defaults, so two spellings of one configuration are equal objects with one key."""

    noise: str = "additive"  # additive (the paper's) | multiplicative | pcm
    levels: tuple | None = None  # eta for additive/multiplicative, inference time in s for pcm [model default]
    targets: str | None = None  # trainable | kernels | all [model default: trainable; pcm: kernels]
    fold_bn: bool = False  # noise onto the BN-folded kernels and biases (what a chip that folds BN stores)
    options: tuple = ()  # the noise model's options as sorted (name, value) pairs [model defaults]
    trials: int | str = DEFAULT_TRIALS  # draws per level, or "auto" (until the 95 % CI is below ci_target)
    ci_target: float = DEFAULT_CI_TARGET  # trials auto: target CI half-width of a^x, a fraction
    max_trials: int = DEFAULT_MAX_TRIALS  # trials auto: most draws per level
    seed: int = 0  # the same seed reproduces every draw

    MEASURED = ("noise", "levels", "targets", "fold_bn", "options")  # what defines the key
    PRECISION = ("trials", "ci_target", "max_trials", "seed")

    def __post_init__(self):
        model = physics.make(self.noise, **dict(self.options))  # unknown noise / option: one-line error
        levels = tuple(float(x) for x in (self.levels if self.levels else model.default_levels))
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "targets", self.targets or model.default_targets)
        object.__setattr__(self, "options", tuple(sorted(model.options.items())))
        object.__setattr__(self, "fold_bn", bool(self.fold_bn))

    def validate(self) -> NoiseConfig:
        model = self.model()
        for level in self.levels:
            model.check_level(level)
        if len(set(self.levels)) != len(self.levels):
            raise LrnoiseError(f"levels repeat a value: {', '.join(map(str, self.levels))}")
        if self.targets not in TARGETS:
            raise LrnoiseError(f"unknown targets {self.targets!r}: choose one of {', '.join(TARGETS)}")
        if self.trials != "auto" and (
            isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1
        ):
            raise LrnoiseError(f"trials must be an integer >= 1 or 'auto', got {self.trials!r}")
        if self.trials == "auto" and not (0 < self.ci_target < 1 and self.max_trials >= MIN_AUTO_TRIALS):
            raise LrnoiseError(
                f"trials auto needs 0 < ci_target < 1 (a fraction: 0.005 = 0.5 points) and "
                f"max_trials >= {MIN_AUTO_TRIALS}, got {self.ci_target} and {self.max_trials}"
            )
        return self

    def model(self) -> physics.NoiseModel:
        return physics.make(self.noise, **dict(self.options))

    @property
    def level_name(self) -> str:
        return physics.NOISE_MODELS[self.noise].level_name  # "eta" or "t"

    def measured(self) -> dict:
        return {k: getattr(self, k) for k in self.MEASURED}

    def precision(self) -> dict:
        """How precisely: the auto-trial settings only count when trials is auto."""
        p = {"trials": self.trials, "seed": self.seed}
        if self.trials == "auto":
            p.update(ci_target=self.ci_target, max_trials=self.max_trials)
        return p

    @property
    def key(self) -> str:
        """What is measured, hashed: evaluations with equal keys measure the same thing."""
        text = json.dumps({k: _plain(v) for k, v in self.measured().items()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def run_key(self) -> str:
        """What is measured and how precisely: a study reuses an evaluation only when this matches."""
        text = json.dumps({k: _plain(v) for k, v in {**self.measured(), **self.precision()}.items()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """Short and readable, unique per key: 'additive-paper', 'pcm-1s-1y', else a summary and the key."""
        default = NoiseConfig(self.noise)
        if self.measured() == NoiseConfig("additive").measured():
            return PRESET_NAMES["paper"]
        labels = [level_label(self.level_name, x) for x in self.levels]
        if self.measured() == default.measured():
            return f"{self.noise}-{labels[0]}-{labels[-1]}" if self.noise == "pcm" else f"{self.noise}-paper"
        return f"{self.noise}-{self.level_name}{labels[0]}-{labels[-1]}-{self.key[:6]}"

    @property
    def is_paper(self) -> bool:
        return self.name == PRESET_NAMES["paper"]

    def to_dict(self) -> dict:
        """Plain JSON-able fields (for a process boundary); `from_dict` reverses it."""
        return {k: _plain(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> NoiseConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if values.get("levels") is not None:
            values["levels"] = tuple(values["levels"])
        values["options"] = tuple((k, v) for k, v in values.get("options", ()))
        return cls(**values)


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


PAPER = NoiseConfig()  # additive, the six paper etas, trainable tensors


# ---------------------------------------------------------------- injection
class Injector:
    """Noisy versions of a set of weights. The clean values are held once; a draw returns {path: tensor}
    with noise on the targeted tensors and the clean value elsewhere.

    All targeted tensors are drawn by the noise model in a few ops over their concatenation (`Layout`),
    then split back: nothing is rebuilt or reloaded per draw, and no variable is modified.
    """

    def __init__(self, clean: dict, target_paths: list[str], noise_model: physics.NoiseModel):
        """`clean`: {variable path: tensor} (networks.weight_values or the folded twin's values)."""
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


def injector_for(config: NoiseConfig, model: keras.Model, evaluator: networks.Evaluator | None = None) -> Injector:
    """The injector a configuration needs: over the model's own weights, or (fold_bn) over the BN-folded
    twin's, which only an Evaluator has. Reuses the evaluator's weight snapshot when given."""
    if config.fold_bn:
        if evaluator is None:
            raise ValueError("fold_bn needs the Evaluator whose folded twin gets the noise")
        return Injector(
            evaluator.fold(evaluator.clean), [v.path for v in TARGETS[config.targets](evaluator.twin)], config.model()
        )
    clean = evaluator.clean if evaluator is not None else networks.weight_values(model)
    return Injector(clean, [v.path for v in TARGETS[config.targets](model)], config.model())


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
        mean, ci, _ = stats.mean_ci(acc)  # eq. 7
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
    config: NoiseConfig = PAPER,
    batch_size: int = 1000,
    log=print,
    evaluator: networks.Evaluator | None = None,
) -> NoiseResult:
    """Clean accuracy a_0, then `config.trials` noisy draws per level (or, with trials auto, until the CI is
    tight). The model's weights are never modified. `evaluator`: an Evaluator of `model` on (x, y) made
    before, e.g. the one training measured a_0 with (a study saves setting one up per evaluation)."""
    config.validate()
    if evaluator is None or (evaluator.count, evaluator.batch_size) != (len(y), batch_size):
        evaluator = networks.Evaluator(model, x, y, batch_size)
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
            f"{stats.ci95(accs):.4f}  normalized {normalized(float(np.mean(accs)), baseline):.4f}  "
            f"({time.perf_counter() - started:.1f}s)"
        )
    return NoiseResult(baseline, pd.DataFrame(rows, columns=["level", "trial", "accuracy", "nonfinite"]))


def noisy_accuracy(
    evaluator: networks.Evaluator, injector: Injector, level: float, seed: int, trial: int, folded: bool = False
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


def _more(accs: list, config: NoiseConfig) -> bool:
    if config.trials != "auto":
        return len(accs) < config.trials
    if len(accs) < MIN_AUTO_TRIALS:
        return True
    return len(accs) < config.max_trials and stats.ci95(accs) >= config.ci_target
