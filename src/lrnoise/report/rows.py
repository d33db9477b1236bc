"""The rows of the report's result tables and figure frames, one dataclass each: a class's fields are its
frame's columns, in order (a field whose column carries a metric's name says so in its metadata, from
lrnoise.names). `frame` turns rows into their DataFrame; `columns` lists a class's columns (the figures check
their input with it, the tests build frames from the classes). Pure data: no store, no matplotlib."""

from __future__ import annotations

from dataclasses import dataclass

from lrnoise import names
from lrnoise.analysis.run_table import named


# ---------------------------------------------------------------- tables (written as csv)
@dataclass(frozen=True)
class CellRow:
    """One configuration's value over its runs (seeds): Tables II and III's csv. The key fields are
    results.CONFIG's (lrnoise.grid.CELL, then label and lr)."""

    dataset: str
    model: str
    optimizer: str
    batch_size: float
    train_noise: float
    label: str  # the model, with its batch size when the runs have several (results.row_label)
    lr: float
    mean: float
    std: float
    ci95: float  # half-width: the t-interval over seeds, or one run's A_avr interval over its draws
    n: int  # runs with the value


@dataclass(frozen=True)
class OptimizerRow:
    """One optimizer at the (dataset, model, batch size, lr) run with the most optimizers: Figure 3's data."""

    dataset: str
    model: str
    batch_size: float
    lr: float
    optimizer: str
    baseline: float = named(names.BASELINE_ACCURACY)
    baseline_ci95: float
    avr: float = named(names.AVG_NORMALIZED_ACCURACY)
    avr_ci95: float
    runs: int


@dataclass(frozen=True)
class ComparisonRow:
    """One of our values beside the paper's (Table II, III or Figure 3)."""

    table: str  # II | III | Fig. 3
    dataset: str
    model: str
    optimizer: str
    lr: float
    metric: str
    ours: float
    paper: float
    difference: float  # ours - paper


@dataclass(frozen=True)
class SweetSpotRow:
    """A dataset and model's sweet spot: the lr with the highest mean A_avr among those within the accuracy
    margin of the best baseline."""

    dataset: str
    model: str
    alias_suffix: str  # '-b<batch size>' when the report has several batch sizes, else ''
    lr: float
    baseline: float = named(names.BASELINE_ACCURACY)
    avr: float = named(names.AVG_NORMALIZED_ACCURACY)
    run_id: str  # the configuration's run with the highest A_avr: the model version the alias moves to
    best_baseline: float = named("best_" + names.BASELINE_ACCURACY)


# ---------------------------------------------------------------- figure frames
@dataclass(frozen=True)
class CurvePoint:
    """Figures 1 and 2: one model and lr's normalised accuracy at one noise level."""

    model: str
    lr: float
    level: float
    normalized_accuracy: float
    ci95: float
    n: int  # runs behind the point


@dataclass(frozen=True)
class LevelPoint:
    """One noise evaluation's curve (noise_curve.png): its normalised accuracy at one level, CI over its draws."""

    level: float
    normalized_accuracy: float
    ci95: float


@dataclass(frozen=True)
class TradeoffPoint:
    """Figure 4: one model and lr's baseline accuracy and robustness (means, 95 % CIs)."""

    model: str
    lr: float
    baseline: float
    baseline_ci95: float
    robust: float
    robust_ci95: float
    n: int


@dataclass(frozen=True)
class NoiseModelPoint:
    """Figure 5: one noise configuration's A_avr of one model and lr."""

    config: str
    model: str
    lr: float
    avr: float
    avr_ci95: float
    n: int


@dataclass(frozen=True)
class MechanismPoint:
    """Figure 6: one run's A_avr against its mean gradient-noise power over training (x)."""

    model: str
    lr: float
    x: float
    avr: float


@dataclass(frozen=True)
class Eq2Point:
    """Figure 7: one run of a grid the eq. 2 test covers."""

    optimizer: str
    lr: float
    batch_size: float
    avr: float


@dataclass(frozen=True)
class FrontierPoint:
    """Figure 8: one configuration of a frontier's lr sweep or train-noise sweep (means, 95 % CIs)."""

    model: str  # the panel: model, optimizer and batch size
    method: str  # analysis.frontier.LR_TUNING | NOISE_TRAINING
    setting: str  # the point's name (lr 0.001, eta 0.1; '' for the train-noise sweep's eta 0)
    baseline: float
    baseline_ci95: float
    avr: float
    avr_ci95: float
    n: int
    target: float  # the comparison's accuracy target (NaN: none drawn)
