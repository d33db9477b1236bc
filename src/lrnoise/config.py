"""What to train, how to run it and which grid a study sweeps: the validated objects that flow from the CLI
through training into the tracking store and back (tracking.train_runs_frame reads runs into typed frames by
these fields), and every list of allowed names. Every default is written here once; the CLI's options and
`MLproject` read the same values (tests/test_cli.py fails when they differ).

Imports nothing heavy (no Keras, no MLflow), so a refused command never pays for TensorFlow's import.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields

from lrnoise import paper
from lrnoise.errors import LrnoiseError
from lrnoise.paper import OPTIMIZERS  # the paper's six, in its order

# ---- allowed names
DATASETS = ("digits", "cifar10", "cifar100")  # digits: scikit-learn's bundled 8x8 images (no download)
# He et al.'s CIFAR ResNets are the 6n+2 family; resnet8 (n = 1) is the smallest, for quick checks and tests
MODEL_DEPTHS = {"resnet8": 8, "resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56}
SHORTCUTS = ("A", "B")  # A: zero-padded identity (He et al.'s CIFAR choice); B: 1x1 projection
NOISE_MODELS = ("additive", "multiplicative", "pcm")  # noise_models.py has one class per name
EXECUTORS = ("local", "ray")  # where a study's configurations run
REUSE = ("same", "any")  # which finished runs a study reuses: made under this code's semantics only, or any
BUDGETS = ("epochs", "steps")  # what `epochs` counts: passes over the data, or the updates such passes take at B_ref
MAX_TRAIN_NOISE = 1.0  # train_noise is eta, a fraction of each tensor's sigma_w (1 = noise as large as the weights)
PRECISION_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}  # Keras dtype policies


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration; its fields are exactly the training run's MLflow params."""

    dataset: str = "digits"  # digits | cifar10 | cifar100
    model: str = "resnet20"  # resnet8 | resnet20 | resnet32 | resnet44 | resnet56 (MODEL_DEPTHS)
    optimizer: str = "adam"  # the paper trains with Adam; Figure 3 compares the six OPTIMIZERS
    lr: float = 0.001  # constant learning rate: the variable under study, no schedule
    batch_size: int = 128  # examples per step
    epochs: int = 100  # upper bound; early stopping usually ends training sooner
    seed: int = 0  # weights init, validation split, shuffling and augmentation all follow it
    init: str = "glorot_uniform"  # the paper's initializer
    shortcut: str = "A"  # He et al.'s option A (zero-padded identity) as for their CIFAR ResNets
    patience: int = 10  # epochs without a better val_loss before stopping; 0 = run all epochs
    train_noise: float = 0.0  # eta of the weight noise injected in every training step (noise_training.py); 0 = none
    budget: str = "epochs"  # epochs: `epochs` passes over the data; steps: the optimizer updates that `epochs`
    # passes take at reference_batch_size, whatever batch_size is (an epoch, for validation and checkpoints, is
    # then that many updates), so batch sizes compare at equal optimizer steps: no early stopping (patience 0), the
    # evaluated weights are the last ones
    reference_batch_size: int = 32  # budget steps only: the batch size whose epochs set the number of updates

    def validate(self) -> TrainConfig:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("model", self.model, MODEL_DEPTHS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not self.lr > 0:
            raise LrnoiseError(f"lr must be > 0, got {self.lr}")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise LrnoiseError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise LrnoiseError(f"patience must be >= 0, got {self.patience}")
        check_choice("shortcut", self.shortcut, SHORTCUTS)
        check_choice("budget", self.budget, BUDGETS)
        if self.budget == "steps" and self.patience:
            raise LrnoiseError(
                f"budget steps trains every model for its full budget of updates (no early stopping, so the "
                f"evaluated weights of every batch size took equal updates): patience must be 0, got {self.patience}"
            )
        if self.reference_batch_size < 1:
            raise LrnoiseError(f"reference_batch_size must be >= 1, got {self.reference_batch_size}")
        if not 0 <= self.train_noise <= MAX_TRAIN_NOISE:
            raise LrnoiseError(
                f"train_noise must be an eta between 0 (clean training) and {MAX_TRAIN_NOISE:g}, got {self.train_noise}"
            )
        return self

    def params(self) -> dict:
        """The training run's params. train_noise is left out at 0, and budget and reference_batch_size with the
        epochs budget, so such a training keeps the params (and configuration key) it always had."""
        params = asdict(self)
        if not self.train_noise:
            del params["train_noise"]
        if self.budget == "epochs":
            del params["budget"], params["reference_batch_size"]
        return params

    @property
    def run_name(self) -> str:
        noisy = f"-tn{self.train_noise:g}" if self.train_noise else ""
        steps = f"-steps{self.reference_batch_size}" if self.budget == "steps" else ""
        return (
            f"{self.dataset}-{self.model}-{self.optimizer}-lr{self.lr:g}-b{self.batch_size}{noisy}{steps}-s{self.seed}"
        )

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        """Rebuilds the config from a run's (string) params; a field not logged takes its default."""
        return cls(**typed(cls, params))


@dataclass(frozen=True)
class Execution:
    """How to run, not what to train: logged as params but not part of the configuration key."""

    mixed_precision: str = "none"  # none | bf16 | fp16: compute in 16 bits, weights stay float32
    jit_compile: bool | None = None  # XLA; None lets Keras decide ("auto")
    steps_per_execution: int = 1  # training steps per compiled call (fewer Python round trips on a GPU)
    grad_noise_batches: int = 8  # K minibatches per epoch for the gradient-noise estimate (eq. 3); 0 = off
    checkpoint_every: float = 60.0  # seconds of training between checkpoint uploads; 0 = every epoch

    def validate(self) -> Execution:
        if self.mixed_precision not in PRECISION_POLICIES:
            raise LrnoiseError(f"unknown mixed precision {self.mixed_precision!r}: choose none, bf16 or fp16")
        if self.steps_per_execution < 1:
            raise LrnoiseError(f"steps_per_execution must be >= 1, got {self.steps_per_execution}")
        if self.checkpoint_every < 0:
            raise LrnoiseError(f"checkpoint_every must be >= 0 seconds, got {self.checkpoint_every}")
        if self.jit_compile not in (None, True, False):
            raise LrnoiseError(f"jit_compile must be true, false or unset (Keras decides), got {self.jit_compile!r}")
        if self.grad_noise_batches < 0 or self.grad_noise_batches == 1:
            raise LrnoiseError(f"grad_noise_batches must be 0 (off) or >= 2, got {self.grad_noise_batches}")
        return self

    def params(self) -> dict:
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict) -> Execution:
        return cls(**typed(cls, params))


@dataclass(frozen=True)
class Placement:
    """Where a study's trainings run: what one training asks for (Ray's resource request; for local worker
    processes, the GPUs each one sees) and, on Ray, the runtime environment of its workers."""

    cpus_per_training: float | None = None  # Ray: CPUs per training; None: with GPUs 1, else a node's CPUs / the
    # preset's workers per node (so trainings never oversubscribe a CPU node)
    gpus_per_training: float | None = None  # None: 1 where there are GPUs, else 0; a fraction 1/k: k per GPU
    ray_runtime_env: str = ""  # a JSON object for Ray's runtime_env (pip, py_modules, working_dir, env_vars, ...)

    def validate(self) -> Placement:
        if self.cpus_per_training is not None and not self.cpus_per_training > 0:
            raise LrnoiseError(f"cpus per training must be > 0, got {self.cpus_per_training:g}")
        if self.gpus_per_training is not None:
            per = self.gpus_per_training
            shares = round(1 / per) if 0 < per < 1 else 0
            whole = math.isfinite(per) and per >= 1 and per == int(per)
            if not (per == 0 or whole or (shares and abs(shares * per - 1) < 1e-3)):
                raise LrnoiseError(
                    f"gpus per training must be 0, a whole number, or a fraction 1/k (0.5, 0.25, ...), got {per:g}"
                )
        self.runtime_env()
        return self

    def runtime_env(self) -> dict:
        """ray_runtime_env as a dict ({} when not given)."""
        import json

        if not self.ray_runtime_env:
            return {}
        try:
            value = json.loads(self.ray_runtime_env)
        except json.JSONDecodeError as exc:
            raise LrnoiseError(f"ray runtime env must be a JSON object, e.g. '{{\"pip\": [...]}}': {exc}") from None
        if not isinstance(value, dict):
            raise LrnoiseError(f"ray runtime env must be a JSON object, got {type(value).__name__}")
        return value


def check_choice(what: str, value, allowed) -> None:
    """One line naming the bad value and what is allowed."""
    if value not in allowed:
        raise LrnoiseError(f"unknown {what} {value!r}: choose one of {', '.join(map(str, allowed))}")


_CASTS = {"int": int, "float": float, "str": str, "bool | None": lambda v: None if v in ("None", "") else v == "True"}


def typed(cls, params: dict) -> dict:
    """A dataclass's fields from params as a tracking store holds them (strings) or a grid lists them:
    {field: value of the field's type} for the fields present."""
    return {f.name: _CASTS[f.type](params[f.name]) for f in fields(cls) if f.name in params}


# ---------------------------------------------------------------- studies
# Figure 3: one (dataset, model, lr) with every optimizer.
FIGURE3_BLOCK = {
    "datasets": (paper.OPTIMIZER_STUDY["dataset"],),
    "models": (paper.OPTIMIZER_STUDY["model"],),
    "optimizers": OPTIMIZERS,
    "lrs": (paper.OPTIMIZER_STUDY["lr"],),
}
# Each preset is a list of blocks; a block's grid is the product of its lists (GRID_FIELDS), a field a block does
# not name takes the preset's own (batch_sizes, train_noises, seeds). Overrides replace a field in every block;
# identical configurations from two blocks run once.
PRESETS = {
    "paper": {
        "blocks": [
            {"datasets": paper.DATASETS, "models": paper.MODELS, "optimizers": ("adam",), "lrs": paper.LRS},
            FIGURE3_BLOCK,
        ],
        "seeds": (0,),
        "epochs": 200,
        "patience": 20,
        "batch_sizes": (128,),  # "trained to convergence"
        "noise": ("additive", "pcm"),
        "trials": 10,
    },
    "optimizers": {
        "blocks": [FIGURE3_BLOCK],
        "seeds": (0,),
        "epochs": 200,
        "patience": 20,
        "batch_sizes": (128,),
        "noise": ("additive", "pcm"),
        "trials": 10,
    },
    # Does the lr effect hold over seeds? Digits, ResNet20, Adam, the paper's six lrs x 5 seeds, paper + PCM
    # noise: <= 20 minutes on 2 CPU cores. `--preset paper --seeds 0,1,2` is the same question on CIFAR.
    "seeds": {
        "blocks": [{"datasets": ("digits",), "models": ("resnet20",), "optimizers": ("adam",), "lrs": paper.LRS}],
        "seeds": (0, 1, 2, 3, 4),
        "epochs": 10,
        "patience": 4,
        "batch_sizes": (32,),
        "noise": ("additive", "pcm"),
        "trials": 5,
        "workers": 2,
    },
    # The paper's shape on the embedded digits data, sized for minutes on 2 CPU cores: ResNet20 at the six lrs
    # with 3 seeds each (so the lr claim gets a verdict with its interval), plus the five other optimizers at
    # lr 0.00075 with one seed (Figure 3).
    "demo": {
        "blocks": [
            {
                "datasets": ("digits",),
                "models": ("resnet20",),
                "optimizers": ("adam",),
                "lrs": paper.LRS,
                "seeds": (0, 1, 2),
            },
            {**FIGURE3_BLOCK, "datasets": ("digits",)},
        ],
        "seeds": (0,),
        "epochs": 10,
        "patience": 4,
        "batch_sizes": (32,),
        "noise": ("additive", "pcm"),
        "trials": 5,
        "workers": 2,  # digits' steps are overhead-bound: two at once leave no core idle on a 2-core CPU
    },
    # Is the gradient noise of eq. 2 the mechanism, and does a tuned lr buy what noise-injection training buys?
    # Digits, ResNet20, 3 seeds. (1) lr x batch size for Adam and SGD with momentum; (0.0005, 8) ~ (0.001, 32)
    # and (0.001, 8) ~ (0.002, 32) have equal lr^2 / B. (2) Noise-injection training at the paper's lr beside
    # the lr sweep at the same batch size (the accuracy-robustness frontier of each). Batch 32 is the largest
    # that converges within 10 digits epochs at these lrs (batch 64 left lr 0.0005 at 67 % clean accuracy).
    "mechanism": {
        "blocks": [
            {
                "datasets": ("digits",),
                "models": ("resnet20",),
                "optimizers": ("adam", "momentum"),
                "lrs": (0.0005, 0.001, 0.002),
                "batch_sizes": (8, 32),
            },
            {
                "datasets": ("digits",),
                "models": ("resnet20",),
                "optimizers": ("adam",),
                "lrs": (paper.OPTIMIZER_STUDY["lr"],),
                "batch_sizes": (32,),
                "train_noises": (0.0, 0.02, 0.05, 0.1),
            },
        ],
        "seeds": (0, 1, 2),
        "epochs": 10,  # epochs at batch 32: every batch size gets the updates 10 epochs take at 32
        "budget": "steps",
        "reference_batch_size": 32,
        "patience": 0,  # steps: every model trains its full budget, so all evaluated weights took equal updates
        "batch_sizes": (32,),
        "noise": ("additive",),
        "trials": 5,
        "workers": 2,
    },
}
# A study's grid: StudySpec's list field -> the TrainConfig field it sweeps. The swept fields are what tells two
# configurations of one study apart: registry version tags, report rows and cells (AXES, CELL) follow from them.
GRID = {
    "datasets": "dataset",
    "models": "model",
    "optimizers": "optimizer",
    "lrs": "lr",
    "batch_sizes": "batch_size",
    "train_noises": "train_noise",
    "seeds": "seed",
}
GRID_FIELDS = tuple(GRID)
SWEPT = tuple(GRID.values())
AXES = ("lr", "batch_size", "train_noise")  # the training axes a claim is made over, holding the others fixed
CELL = tuple(f for f in SWEPT if f not in ("lr", "seed"))  # an lr claim's cell: its runs over lr and seed
# what a preset that names neither a grid field nor a setting gets: TrainConfig's own defaults
PRESET_DEFAULTS = {
    "train_noises": (0.0,),
    "budget": TrainConfig.budget,
    "reference_batch_size": TrainConfig.reference_batch_size,
}


@dataclass
class StudySpec:
    """What a study sweeps: a preset, and the lists and settings that override it (None: the preset's)."""

    preset: str = "demo"
    datasets: tuple | None = None
    models: tuple | None = None
    optimizers: tuple | None = None
    lrs: tuple | None = None
    batch_sizes: tuple | None = None
    train_noises: tuple | None = None  # etas of noise-injection training (0 = clean)
    seeds: tuple | None = None
    epochs: int | None = None
    noise: tuple | None = None  # noise configuration names: additive (the paper's), multiplicative, pcm
    etas: tuple | None = None  # levels of the eta-axis configurations (additive, multiplicative)
    times: tuple | None = None  # levels of the time-axis configurations (pcm), seconds
    trials: int | str | None = None
    patience: int | None = None
    budget: str | None = None  # epochs | steps (TrainConfig.budget)
    reference_batch_size: int | None = None  # budget steps: the batch size whose epochs set the updates
    batch_size: int | None = None  # one batch size: the same as batch_sizes=(batch_size,)

    def __post_init__(self):
        check_choice("preset", self.preset, PRESETS)
        if self.batch_size is not None:
            if self.batch_sizes is not None and tuple(self.batch_sizes) != (self.batch_size,):
                raise LrnoiseError("give either --batch-size or --batch-sizes, not both")
            self.batch_sizes = (self.batch_size,)

    def setting(self, name: str):
        """The override if given, else the preset's value."""
        value = getattr(self, name)
        return value if value is not None else PRESETS[self.preset].get(name, PRESET_DEFAULTS.get(name))

    def grid(self, block: dict) -> dict:
        """A block's lists: the override, else the block's own, else the preset's."""
        return {f: getattr(self, f) or block.get(f) or self.setting(f) for f in GRID_FIELDS}

    def train_configs(self) -> list[TrainConfig]:
        """Every training configuration of the grid, validated, in block order, each once (two blocks may name
        the same one)."""
        configs = []
        budget = self.setting("budget")
        # budget steps never stops early: its patience is 0 unless one was given (and then refused)
        patience = 0 if budget == "steps" and self.patience is None else self.setting("patience")
        for block in PRESETS[self.preset]["blocks"]:
            grid = self.grid(block)
            for values in itertools.product(*(grid[f] for f in GRID_FIELDS)):
                config = TrainConfig(
                    **typed(TrainConfig, dict(zip(SWEPT, values))),
                    epochs=self.setting("epochs"),
                    patience=patience,
                    budget=budget,
                    reference_batch_size=self.setting("reference_batch_size"),
                ).validate()
                if config not in configs:
                    configs.append(config)
        return configs

    def validate(self) -> StudySpec:
        """Every configuration of the grid and every noise model name checked (the noise levels are checked by
        the noise models themselves when the study plans its noise configurations)."""
        for name in self.setting("noise"):
            check_choice("noise", name, NOISE_MODELS)
        self.train_configs()
        return self
