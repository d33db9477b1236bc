"""What a study sweeps: the presets (each a list of blocks whose lists multiply into a grid), the grid's fields
and the axes a claim is made over, and `StudySpec`, a preset with its overrides, planned into validated
`TrainConfig`s. Imports nothing heavy (no Keras, no MLflow).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from lrnoise import paper
from lrnoise.config import (
    BUDGETS,
    DATASETS,
    MODEL_DEPTHS,
    NOISE_MODELS,
    OPTIMIZERS,
    TrainConfig,
    check_choice,
    option,
    typed,
)
from lrnoise.errors import LrnoiseError

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
    # The lr question on a real benchmark, offline: Fashion-MNIST (the system package dataset-fashion-mnist),
    # ResNet20, Adam at the paper's six lrs x 3 seeds, paper + PCM noise, sized for about an hour on 2 CPU cores
    # (ResNet20 trains ~210 images/s on 28x28 there): 4,000 of the 60,000 training images (stratified, from the
    # seed), scored on 1,000 of the 10,000 test images (the same for every run). On a GPU the whole data is
    # `--train-examples 60000 --test-examples 10000`.
    "fashion": {
        "blocks": [
            {"datasets": ("fashion_mnist",), "models": ("resnet20",), "optimizers": ("adam",), "lrs": paper.LRS}
        ],
        "seeds": (0, 1, 2),
        "epochs": 8,
        "patience": 4,
        "batch_sizes": (32,),
        "train_examples": 4000,
        "test_examples": 1000,
        "noise": ("additive", "pcm"),
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

    preset: str = option("demo", "the grid to run (README: Studies)", tuple(PRESETS))
    datasets: tuple[str, ...] | None = option(None, "override, e.g. cifar10,cifar100", DATASETS)
    models: tuple[str, ...] | None = option(None, "override, e.g. resnet20,resnet32", tuple(MODEL_DEPTHS))
    optimizers: tuple[str, ...] | None = option(None, "override, e.g. adam,sgd", OPTIMIZERS)
    lrs: tuple[float, ...] | None = option(None, "override, e.g. 0.0005,0.001")
    batch_sizes: tuple[int, ...] | None = option(None, "override, e.g. 16,32,64,128 (a swept axis)")
    train_noises: tuple[float, ...] | None = option(
        None, "noise-injection training etas, e.g. 0,0.02,0.05,0.1 (0 = clean training; a swept axis)"
    )
    seeds: tuple[int, ...] | None = option(None, "override, e.g. 0,1,2")
    epochs: int | None = option(None, "override the preset's maximum epochs")
    noise: tuple[str, ...] | None = option(None, "noise configurations, e.g. additive,pcm [preset's]", NOISE_MODELS)
    etas: tuple[float, ...] | None = option(None, "override the eta levels of additive/multiplicative")
    times: tuple[float, ...] | None = option(None, "override the inference times (s) of pcm")
    trials: int | str | None = option(None, "override draws per level (or 'auto')")
    patience: int | None = option(None, "override early-stopping patience")
    budget: str | None = option(None, "equal optimizer steps for every batch size with steps [preset's]", BUDGETS)
    reference_batch_size: int | None = option(
        None, "budget steps: the batch size whose epochs set the updates [preset's, else 32]"
    )
    batch_size: int | None = option(None, "one batch size for every configuration (= --batch-sizes N)")
    train_examples: int | None = option(
        None, "training images per configuration, a stratified subset from each seed [preset's, else all]"
    )
    test_examples: int | None = option(None, "test images to score, a stratified subset [preset's, else all]")

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
                    train_examples=self.setting("train_examples"),
                    test_examples=self.setting("test_examples"),
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
