"""What one training is and how it runs: `TrainConfig` (its fields are exactly a training run's params),
`Execution` and `Placement`, every list of allowed names, `option` (a field's default, help and allowed values,
written once and read by the CLI) and `typed` (a run's string params cast back by each field's annotation).

Imports nothing heavy (no Keras, no MLflow), so a refused command never pays for TensorFlow's import.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields

from lrnoise.errors import LrnoiseError
from lrnoise.paper import OPTIMIZERS  # the paper's six, in its order


# ---- allowed names
@dataclass(frozen=True)
class Split:
    """A dataset's size as lrnoise loads it: training images (the validation split comes out of them), test."""

    train: int
    test: int


# digits: scikit-learn's bundled 8x8 images (a fixed fifth held out as the test set); fashion_mnist: 28x28 grey,
# offline from the system package dataset-fashion-mnist (data/idx.py); CIFAR10/100: the 32x32 colour archives
DATASET_SIZES = {
    "digits": Split(train=1438, test=359),
    "cifar10": Split(train=50_000, test=10_000),
    "cifar100": Split(train=50_000, test=10_000),
    "fashion_mnist": Split(train=60_000, test=10_000),
}
DATASETS = tuple(DATASET_SIZES)
# He et al.'s CIFAR ResNets are the 6n+2 family; resnet8 (n = 1) is the smallest, for quick checks and tests
MODEL_DEPTHS = {"resnet8": 8, "resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56}
SHORTCUTS = ("A", "B")  # A: zero-padded identity (He et al.'s CIFAR choice); B: 1x1 projection
NOISE_MODELS = ("additive", "multiplicative", "pcm")  # noise/physics.py: one class each (a test checks)
EXECUTORS = ("local", "ray")  # where a study's configurations run
REUSE = ("same", "any")  # which finished runs a study reuses: made under this code's semantics only, or any
BUDGETS = ("epochs", "steps")  # what `epochs` counts: passes over the data, or the updates such passes take at B_ref
MAX_TRAIN_NOISE = 1.0  # train_noise is eta, a fraction of each tensor's sigma_w (1 = noise as large as the weights)
REFERENCE_BATCH_SIZE = 32  # budget steps: the batch size whose epochs set the updates, unless one is given
PRECISION_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}  # Keras dtype policies


def option(default, help: str, choices=None, flags: tuple = (), **more):
    """A configuration field that is also a command-line option: its default, its help, and the allowed values
    (the help lists them). The CLI's options, MLproject's parameters and the params a run logs all come from
    the dataclass fields (tests/test_cli.py checks MLproject against them)."""
    return field(default=default, metadata={"help": help, "choices": choices, "flags": flags, **more})


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration; its fields are exactly the training run's MLflow params."""

    dataset: str = option("digits", "the data (digits: scikit-learn's 8x8 images, bundled)", DATASETS)
    model: str = option("resnet20", "He et al.'s CIFAR ResNet of this depth", tuple(MODEL_DEPTHS))
    optimizer: str = option("adam", "the paper trains with Adam; Figure 3 compares all six", OPTIMIZERS)
    lr: float = option(0.001, "constant learning rate: the variable under study, no schedule")
    batch_size: int = option(128, "examples per step")
    epochs: int = option(100, "maximum epochs (early stopping may end sooner)")
    seed: int = option(0, "weights init, validation split, shuffling and augmentation all follow it")
    init: str = option("glorot_uniform", "the paper's initializer (a Keras initializer name)")
    shortcut: str = option(
        "A", "ResNet shortcut: A (zero-padded identity, He et al.'s CIFAR choice) or B (1x1 projection)", SHORTCUTS
    )
    patience: int = option(10, "early-stopping patience on val_loss in epochs; 0 = train all epochs (budget steps: 0)")
    train_noise: float = option(
        0.0, "noise-injection training: eta of the additive weight noise drawn in every step (0.05 = 5 %); 0 = none"
    )
    # steps: the optimizer updates that `epochs` passes take at reference_batch_size, whatever batch_size is (an
    # epoch, for validation and checkpoints, is then that many updates), so batch sizes compare at equal
    # optimizer steps: no early stopping (patience 0), the evaluated weights are the last ones
    budget: str = option(
        "epochs",
        "what epochs counts: passes over the data, or the updates such passes take at the reference batch "
        "size (equal steps for every batch size)",
        BUDGETS,
    )
    reference_batch_size: int = option(
        REFERENCE_BATCH_SIZE, "budget steps: the batch size whose epochs set the number of updates"
    )
    # Subsets for a CPU: part of the configuration (and its key) when given; the whole set is the default, and a
    # count equal to the whole set means the whole set (the same configuration as giving none)
    # (`part`: the Split field it is a subset of)
    train_examples: int | None = option(
        None,
        "training images to draw from the training set, stratified by class from the seed (10 % of them are the "
        "validation split) [default: all]",
        part="train",
    )
    test_examples: int | None = option(
        None,
        "test images to score, a stratified subset that is the same for every seed and lr [default: all]",
        part="test",
    )

    def __post_init__(self):
        size = DATASET_SIZES.get(self.dataset)  # an unknown dataset is validate()'s to refuse
        for name, part in SUBSETS.items():
            if size is not None and getattr(self, name) == getattr(size, part):
                object.__setattr__(self, name, None)  # the whole set, however it was asked for

    def validate(self) -> TrainConfig:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("model", self.model, MODEL_DEPTHS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LrnoiseError(f"lr must be a finite number > 0, got {self.lr}")
        if self.seed < 0:
            raise LrnoiseError(f"seed must be >= 0, got {self.seed}")
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
        if self.budget == "epochs" and self.reference_batch_size != REFERENCE_BATCH_SIZE:
            raise LrnoiseError("reference_batch_size is for budget steps: add --budget steps or drop it")
        if self.reference_batch_size < 1:
            raise LrnoiseError(f"reference_batch_size must be >= 1, got {self.reference_batch_size}")
        if not 0 <= self.train_noise <= MAX_TRAIN_NOISE:
            raise LrnoiseError(
                f"train_noise must be an eta between 0 (clean training) and {MAX_TRAIN_NOISE:g}, got {self.train_noise}"
            )
        for name, part in SUBSETS.items():
            count, whole = getattr(self, name), getattr(DATASET_SIZES[self.dataset], part)
            if count is not None and not 1 <= count <= whole:
                raise LrnoiseError(
                    f"{name} must be from 1 to {whole} (the {self.dataset} {SPLIT_WORDS[part]} set), got {count}"
                )
        return self

    def params(self) -> dict:
        """The training run's params. train_noise is left out at 0, budget and reference_batch_size with the
        epochs budget, and the example counts on the whole data, so such a training keeps the params (and
        configuration key) it always had."""
        params = asdict(self)
        if not self.train_noise:
            del params["train_noise"]
        if self.budget == "epochs":
            del params["budget"], params["reference_batch_size"]
        for name in SUBSETS:
            if params[name] is None:
                del params[name]
        return params

    @property
    def run_name(self) -> str:
        noisy = f"-tn{self.train_noise:g}" if self.train_noise else ""
        steps = f"-steps{self.reference_batch_size}" if self.budget == "steps" else ""
        data = data_name(self.dataset, self.train_examples, self.test_examples)
        return f"{data}-{self.model}-{self.optimizer}-lr{self.lr:g}-b{self.batch_size}{noisy}{steps}-s{self.seed}"

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        """Rebuilds the config from a run's (string) params; a field not logged takes its default."""
        return cls(**typed(cls, params))


SUBSETS = {f.name: f.metadata["part"] for f in fields(TrainConfig) if "part" in f.metadata}  # field -> Split's
SPLIT_WORDS = {"train": "training", "test": "test"}
SUBSET_TAGS = {"train": "n", "test": "t"}  # data_name's marks: fashion_mnist-n4000-t1000


@dataclass(frozen=True)
class Execution:
    """How to run, not what to train: logged as params but not part of the configuration key."""

    mixed_precision: str = option("none", "16-bit compute, float32 weights", tuple(PRECISION_POLICIES))
    jit_compile: bool | None = option(
        None, "XLA-compile the training step [default: Keras decides]", flags=("--jit-compile/--no-jit-compile",)
    )
    steps_per_execution: int = option(1, "training steps per compiled call (fewer Python round trips on a GPU)")
    grad_noise_batches: int = option(8, "K minibatches per epoch for the gradient-noise estimate (eq. 3); 0 = off")
    checkpoint_every: float = option(60.0, "seconds of training between checkpoint uploads (0 = every epoch)")

    def validate(self) -> Execution:
        check_choice("mixed precision", self.mixed_precision, PRECISION_POLICIES)
        if self.steps_per_execution < 1:
            raise LrnoiseError(f"steps_per_execution must be >= 1, got {self.steps_per_execution}")
        if not (self.checkpoint_every >= 0 and math.isfinite(self.checkpoint_every)):
            raise LrnoiseError(f"checkpoint_every must be a finite number of seconds >= 0, got {self.checkpoint_every}")
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

    cpus_per_training: float | None = option(
        None,
        "Ray: CPUs each training asks for [default: 1 beside a GPU; on CPU nodes the smallest node's CPUs / "
        "the preset's workers per node]",
    )
    gpus_per_training: float | None = option(
        None,
        "GPUs each training asks for (Ray) or sees (local workers): 0, a whole number, or 1/k to share one GPU "
        "k ways [default: 1 where there are GPUs, else 0]",
    )
    ray_runtime_env: str = option(
        "",
        'Ray runtime_env of the workers as a JSON object, e.g. \'{"py_modules": ["src/lrnoise"]}\' for nodes '
        "without lrnoise installed",
    )

    def validate(self) -> Placement:
        if self.cpus_per_training is not None and not (
            self.cpus_per_training > 0 and math.isfinite(self.cpus_per_training)
        ):
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


def data_name(dataset: str, train_examples: int | None = None, test_examples: int | None = None) -> str:
    """The data a configuration saw, as run names and the report's cells name it: the dataset's name, with
    '-n<training images>' and '-t<test images>' where it drew a subset ('fashion_mnist-n4000-t1000'). Runs on
    different subsets never share a cell of the report."""
    counts = dict(zip(SUBSETS.values(), (train_examples, test_examples)))  # None (NaN in a run table): all
    return dataset + "".join(
        f"-{SUBSET_TAGS[part]}{int(n)}" for part, n in counts.items() if n is not None and not math.isnan(n)
    )


def describe_data(name: str) -> str:
    """data_name's text in words: 'fashion_mnist (4,000 of 60,000 training images; 1,000 of 10,000 test images)';
    the whole of a dataset is its bare name."""
    dataset, *marks = name.split("-")
    size = DATASET_SIZES.get(dataset)
    if size is None or not marks:
        return name
    part_of = {tag: part for part, tag in SUBSET_TAGS.items()}
    words = [
        f"{int(mark[1:]):,} of {getattr(size, part_of[mark[0]]):,} {SPLIT_WORDS[part_of[mark[0]]]} images"
        for mark in marks
    ]
    return f"{dataset} ({'; '.join(words)})"


def flag(name: str) -> str:
    """A field's command-line flag: batch_size -> --batch-size (what a refusal names)."""
    return "--" + name.replace("_", "-")


def check_choice(what: str, value, allowed) -> None:
    """One line naming the bad value and what is allowed."""
    if value not in allowed:
        raise LrnoiseError(f"unknown {what} {value!r}: choose one of {', '.join(map(str, allowed))}")


def cast(annotation, value):
    """`value` (a string, as a tracking store holds params, or already typed) as a field of type `annotation`:
    int, float, bool, str, tuple (comma-separated text) and unions of them with None ("None" or "" -> None)."""
    if not isinstance(value, str):
        return value
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    if args:
        if type(None) in args and value in ("None", ""):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return cast(arg, value)
            except ValueError:
                continue
        raise ValueError(f"{value!r} is none of {annotation}")
    if annotation is bool:
        if value not in ("True", "False"):
            raise ValueError(f"{value!r} is not True or False")
        return value == "True"
    if annotation is tuple or typing.get_origin(annotation) is tuple:
        item = (typing.get_args(annotation) or (str,))[0]  # tuple[float, ...] -> float
        return tuple(cast(item, part.strip()) for part in value.split(",") if part.strip())
    return annotation(value)


def typed(cls, params: dict) -> dict:
    """A dataclass's fields from params as a tracking store holds them (strings) or a grid lists them:
    {field: value of the field's type} for the fields present, whatever the field's annotation."""
    hints = typing.get_type_hints(cls)
    return {f.name: cast(hints[f.name], params[f.name]) for f in fields(cls) if f.name in params}
