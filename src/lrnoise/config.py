"""What to train and how to run it: the two validated objects that flow from the CLI (or a study's grid) through
training into the tracking store. Every default is written here once; the CLI's options and `MLproject` read
the same values (tests/test_cli.py fails when they differ).

Imports nothing heavy (no Keras, no MLflow), so the command line can read the defaults cheaply.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from lrnoise.errors import LrnoiseError
from lrnoise.paper import OPTIMIZERS  # the paper's six, in its order

MAX_TRAIN_NOISE = 1.0  # train_noise is eta, a fraction of each tensor's sigma_w (1 = noise as large as the weights)
PRECISION_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}  # Keras dtype policies


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration; its fields are exactly the training run's MLflow params."""
    dataset: str = "digits"  # digits | cifar10 | cifar100
    model: str = "resnet20"  # resnet20 | resnet32 | resnet44 | resnet56
    optimizer: str = "adam"  # the paper trains with Adam; Figure 3 compares the six OPTIMIZERS
    lr: float = 0.001  # constant learning rate: the variable under study, no schedule
    batch_size: int = 128  # examples per step
    epochs: int = 100  # upper bound; early stopping usually ends training sooner
    seed: int = 0  # weights init, validation split, shuffling and augmentation all follow it
    init: str = "glorot_uniform"  # the paper's initializer
    shortcut: str = "A"  # He et al.'s option A (zero-padded identity) as for their CIFAR ResNets
    patience: int = 10  # epochs without a better val_loss before stopping; 0 = run all epochs
    train_noise: float = 0.0  # eta of the weight noise injected in every training step (noise_training.py); 0 = none

    def validate(self) -> "TrainConfig":
        from lrnoise import data, models  # models imports Keras: only when a configuration is checked
        data.check_dataset(self.dataset)
        models.depth_of(self.model)
        if self.optimizer not in OPTIMIZERS:
            raise LrnoiseError(f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise LrnoiseError(f"lr must be > 0, got {self.lr}")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise LrnoiseError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise LrnoiseError(f"patience must be >= 0, got {self.patience}")
        models.check_shortcut(self.shortcut)
        if not 0 <= self.train_noise <= MAX_TRAIN_NOISE:
            raise LrnoiseError(f"train_noise must be an eta between 0 (clean training) and {MAX_TRAIN_NOISE:g}, "
                               f"got {self.train_noise}")
        return self

    def params(self) -> dict:
        """The training run's params. train_noise is left out at 0, so a clean training keeps the params (and
        configuration key) it had before noise-injection training existed."""
        params = asdict(self)
        if not self.train_noise:
            del params["train_noise"]
        return params

    @property
    def run_name(self) -> str:
        noisy = f"-tn{self.train_noise:g}" if self.train_noise else ""
        return f"{self.dataset}-{self.model}-{self.optimizer}-lr{self.lr:g}-b{self.batch_size}{noisy}-s{self.seed}"

    @classmethod
    def from_params(cls, params: dict) -> "TrainConfig":
        """Rebuilds the config from a run's (string) params."""
        kwargs = {}
        for f in fields(cls):
            if f.name in params:
                kwargs[f.name] = {"int": int, "float": float}.get(f.type, str)(params[f.name])
        return cls(**kwargs)


@dataclass(frozen=True)
class Execution:
    """How to run, not what to train: logged as params but not part of the configuration key."""
    mixed_precision: str = "none"  # none | bf16 | fp16: compute in 16 bits, weights stay float32
    jit_compile: bool | None = None  # XLA; None lets Keras decide ("auto")
    steps_per_execution: int = 1  # training steps per compiled call (fewer Python round trips on a GPU)
    grad_noise_batches: int = 8  # K minibatches per epoch for the gradient-noise estimate (eq. 3); 0 = off
    checkpoint_every: float = 60.0  # seconds of training between checkpoint uploads; 0 = every epoch

    def validate(self) -> "Execution":
        if self.mixed_precision not in PRECISION_POLICIES:
            raise LrnoiseError(f"unknown mixed precision {self.mixed_precision!r}: choose none, bf16 or fp16")
        if self.steps_per_execution < 1:
            raise LrnoiseError(f"steps_per_execution must be >= 1, got {self.steps_per_execution}")
        if self.checkpoint_every < 0:
            raise LrnoiseError(f"checkpoint_every must be >= 0 seconds, got {self.checkpoint_every}")
        if self.grad_noise_batches < 0 or self.grad_noise_batches == 1:
            raise LrnoiseError(f"grad_noise_batches must be 0 (off) or >= 2, got {self.grad_noise_batches}")
        return self

    def params(self) -> dict:
        return asdict(self)
