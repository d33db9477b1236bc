"""What one noise evaluation measures and how precisely: the `NoiseConfig` (noise model, levels, targeted
tensors, BN folding, the model's options; trials, or auto trials with a CI target), its key, readable name and
params, and the sets of weights a configuration can target. The noise model classes (physics.py) give the
defaults of what is not set, so two spellings of one configuration are equal objects with one key.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass, fields

import numpy as np

from lrnoise import config, names
from lrnoise.config import option
from lrnoise.errors import LrnoiseError
from lrnoise.grid import StudySpec
from lrnoise.noise import physics

PAPER_ETAS = physics.Additive.default_levels  # the paper's noise form factors (1 % ... 40 %)
DEFAULT_TRIALS = 10  # draws per level (the paper repeats but does not say how often)
DEFAULT_CI_TARGET = 0.005  # trials auto: stop when the 95 % CI half-width of a^x is below this (a fraction: 0.5 pp)
DEFAULT_MAX_TRIALS = 100  # trials auto: never more draws than this per level
MIN_AUTO_TRIALS = 3  # trials auto: draws before the CI is trusted


# ---------------------------------------------------------------- which weights get noise
def _is_input_normalization(variable) -> bool:
    return variable.path.startswith(names.NORMALIZATION_LAYER + "/")


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


PRESET_NAMES = {"paper": names.PAPER_NOISE_CONFIG}  # the paper's configuration: its tables keep the bare names


@dataclass(frozen=True)
class NoiseConfig:
    """One noise evaluation: what is measured (noise model, levels, targets, BN folding, the model's options)
    and how precisely (trials, or auto with ci_target / max_trials; seed). Unset fields take the noise
    model's defaults, so two spellings of one configuration are equal objects with one key."""

    # what is measured (the key)
    noise: str = option(
        "additive",
        "additive (the paper's: W + N(0, (eta sigma_w)^2)) | multiplicative | pcm (phase-change memory)",
        config.NOISE_MODELS,
        part="measured",
    )
    levels: tuple[float, ...] | None = option(
        None,
        "noise levels: eta (0.1 = 10 %) for additive/multiplicative, inference time in seconds for pcm "
        "[the model's defaults]",
        flags=("--levels", "--etas"),
        part="measured",
    )
    targets: str | None = option(
        None, "which weights get noise [additive: trainable; pcm: kernels]", tuple(TARGETS), part="measured"
    )
    fold_bn: bool = option(
        False, "noise onto the BN-folded kernels and biases", flags=("--fold-bn/--no-fold-bn",), part="measured"
    )
    options: tuple = option(
        (),
        "the noise model's options as NAME=VALUE pairs, e.g. pcm: g_max=25,drift_compensation=false",
        flags=("--noise-option",),
        part="measured",
    )
    # how precisely
    trials: int | str = option(
        DEFAULT_TRIALS, "draws per level, or 'auto' (until the 95 % CI is below --ci-target)", part="precision"
    )
    ci_target: float = option(
        DEFAULT_CI_TARGET,
        "trials auto: target 95 % CI half-width of a^x, a fraction (0.005 = 0.5 points)",
        part="precision",
    )
    max_trials: int = option(DEFAULT_MAX_TRIALS, "trials auto: most draws per level", part="precision")
    seed: int = option(0, "the same seed reproduces every draw", part="precision")

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
        if self.trials != "auto" and (self.ci_target, self.max_trials) != (DEFAULT_CI_TARGET, DEFAULT_MAX_TRIALS):
            raise LrnoiseError("ci_target and max_trials are for trials auto: add --trials auto or drop them")
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
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["part"] == "measured"}

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

    def params(self) -> dict:
        """The evaluation run's params: what is measured and how precisely, each under names.NOISE_PARAM_PREFIX."""
        return names.noise_params({**self.measured(), **self.precision()})

    @classmethod
    def from_params(cls, params: dict) -> NoiseConfig:
        """The configuration an evaluation run's (string) params describe; `params()` reversed. Params of other
        prefixes are ignored, and a field not logged takes its default."""
        prefix = names.NOISE_PARAM_PREFIX
        raw = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
        values, hints = {}, typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name not in raw:
                continue
            text = str(raw[f.name])
            if f.name == "options":  # name=value pairs ('none': no option); each value of its default's type
                pairs = [] if text == "none" else [item.split("=", 1) for item in text.split(",")]
                defaults = physics.make(values.get("noise", cls.noise)).option_defaults
                values["options"] = tuple((k, config.cast(type(defaults.get(k, "")), v)) for k, v in pairs)
            else:
                values[f.name] = config.cast(hints[f.name], text)
        return cls(**values)

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


def study_configs(spec: StudySpec) -> tuple[NoiseConfig, ...]:
    """One NoiseConfig per noise model the study names, with the overridden levels and precision."""
    configs = []
    for name in spec.setting("noise"):
        axis_levels = {"eta": spec.etas, "t": spec.times}
        probe = NoiseConfig(name)  # unknown noise model: one-line error
        configs.append(
            NoiseConfig(name, levels=axis_levels[probe.level_name], trials=spec.setting("trials")).validate()
        )
    return tuple(dict.fromkeys(configs))


PAPER = NoiseConfig()  # additive, the six paper etas, trainable tensors
