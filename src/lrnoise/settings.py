"""How a study runs and what a report shows: the settings objects the CLI builds once, validates once and passes
whole (study/runner.py and report/assembly.py read them; nothing re-lists their fields). What a study sweeps is
grid.StudySpec; what one training is, config.TrainConfig.

Imports nothing heavy (no Keras, no MLflow), so a refused command never pays for TensorFlow's import.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from lrnoise import names
from lrnoise.config import (
    DATASETS,
    EXECUTORS,
    MODEL_DEPTHS,
    OPTIMIZERS,
    REUSE,
    Execution,
    Placement,
    check_choice,
    flag,
    option,
)
from lrnoise.errors import LrnoiseError

RAY_ADDRESS = re.compile(r"auto|(ray://)?[\w.\-]+:\d{1,5}")  # what Ray's init accepts as an existing cluster
DEFAULT_LEASE_TIMEOUT = 300.0  # seconds without a heartbeat after which a run's owner is gone: > a GPU epoch


@dataclass(frozen=True)
class StudySettings:
    """Where a study's runs go and how its configurations run (not what they are: that is the StudySpec)."""

    experiment: str = option(names.DEFAULT_EXPERIMENT, "MLflow experiment")
    workers: int | None = option(
        None,
        "configurations at once (processes; each with its own GPUs when GPUs exist: --gpus-per-training) "
        "[default: one per GPU; on a CPU the preset's (2 for demo, seeds, mechanism and fashion) up to the cores]",
    )
    executor: str = option("local", "where the configurations run", EXECUTORS)
    reuse: str = option(
        "same",
        "which finished runs are reused: same (made under this lrnoise's training and noise semantics) or any "
        "(older ones too)",
        REUSE,
    )
    ray_address: str | None = option(None, "Ray cluster address [default: a local instance]")
    data_dir: str | None = option(None, "folder with the official CIFAR archives")
    report: bool = option(True, "build the report at the end", flags=("--report/--no-report",))
    report_dir: str | None = option(None, "report folder [default: reports/<experiment>]")
    lease_timeout: float = option(
        DEFAULT_LEASE_TIMEOUT,
        "seconds without a heartbeat after which another study's run is taken over (at once when its process on "
        "this host is gone)",
    )
    execution: Execution = field(default_factory=Execution)  # how each training runs
    placement: Placement = field(default_factory=Placement)  # what each training asks for

    def validate(self) -> StudySettings:
        check_choice("executor", self.executor, EXECUTORS)
        check_choice("reuse", self.reuse, REUSE)
        if self.workers is not None and self.workers < 1:
            raise LrnoiseError(f"workers must be >= 1, got {self.workers}")
        if not (self.lease_timeout > 0 and math.isfinite(self.lease_timeout)):
            raise LrnoiseError(f"lease timeout must be > 0 seconds, got {self.lease_timeout}")
        self.execution.validate()
        self.placement.validate()
        if self.executor != "ray":
            given = [name for name, value in self.ray_only().items() if value not in (None, "")]
            if given:
                raise LrnoiseError(f"{flag(given[0])} is for --executor ray only: add it or drop the option")
        if self.ray_address and not RAY_ADDRESS.fullmatch(self.ray_address):
            raise LrnoiseError(f"ray address must be auto, HOST:PORT or ray://HOST:PORT, got {self.ray_address!r}")
        return self

    def ray_only(self) -> dict:
        """The settings that mean something on Ray only."""
        return {
            "ray_address": self.ray_address,
            "cpus_per_training": self.placement.cpus_per_training,
            "ray_runtime_env": self.placement.ray_runtime_env,
        }


@dataclass(frozen=True)
class ReportSettings:
    """What a report covers and how it judges: the runs it reads, the noise configuration, the sweet spots'
    accuracy margin and the frontier's target."""

    experiment: str = option(names.DEFAULT_EXPERIMENT, "MLflow experiment to report on")
    out: str | None = option(None, "output folder [default: reports/<experiment>]")
    dataset: str | None = option(None, "only this dataset", DATASETS)
    model: str | None = option(None, "only this model", tuple(MODEL_DEPTHS))
    optimizer: str | None = option(None, "only this optimizer (tables use adam by default)", OPTIMIZERS)
    noise_config: str = option(
        names.PAPER_NOISE_CONFIG,
        "the noise configuration to report, by name or key (e.g. additive-paper, pcm-1s-1y), or 'all'",
    )
    max_accuracy_drop: float = option(
        0.01, "sweet spot and frontier: a baseline within this fraction of the best (0.01 = 1 point)"
    )
    pdf: bool = option(
        True, "each figure also as pdf (for papers; --no-pdf: png only, faster)", flags=("--pdf/--no-pdf",)
    )
    target_accuracy: float | None = option(
        None,
        "the lr-tuning vs noise-injection frontier's clean-accuracy target, a fraction [default: the eta = 0 "
        "configuration's mean less --max-accuracy-drop]",
    )

    def validate(self) -> ReportSettings:
        for name, allowed in (("dataset", DATASETS), ("model", MODEL_DEPTHS), ("optimizer", OPTIMIZERS)):
            if getattr(self, name):
                check_choice(name, getattr(self, name), allowed)
        if not 0 <= self.max_accuracy_drop < 1:
            raise LrnoiseError(
                f"max accuracy drop must be a fraction >= 0 and < 1 (0.01 = 1 point), got {self.max_accuracy_drop}"
            )
        if self.target_accuracy is not None and not 0 <= self.target_accuracy <= 1:
            raise LrnoiseError(f"target accuracy must be a fraction between 0 and 1, got {self.target_accuracy}")
        return self
