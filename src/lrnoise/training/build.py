"""How a configuration becomes a compiled model and its training stream, and what one process keeps between
the configurations of a sweep (SweepCache).

The building functions (make_optimizer, initial_model, compile_model, build_model, build_state, load_data,
training_stream) are what a new training run does before fit. Tracing a model's training, validation and
gradient-noise steps costs ~3-6 s on a CPU, more than a short configuration's learning, and a sweep's
configurations mostly share an architecture. A configuration with the same architecture, input normalisation and
execution options as an earlier one therefore starts from that earlier model: its weights become the
configuration's own freshly initialised ones, and its optimizer gets the state of a newly built optimizer of its
kind (the same type: the new optimizer's values are copied into the traced one, whose variables the traced step
reads; another type: the new optimizer itself, so the step is traced again). The same seed gives bit-identical
weights alone and inside a sweep, for every optimizer (tests/test_build.py). The input normalisation is part of
the key because Keras bakes its mean and variance into the traced graph as constants.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass

import keras
import numpy as np

from lrnoise.config import PRECISION_POLICIES, Execution, TrainConfig
from lrnoise.data import loading, pipelines
from lrnoise.training import fastpath, networks

MOMENTUM = 0.9  # for the momentum / nesterov SGD variants (the paper does not say; 0.9 is the usual value)
VAL_FRACTION = 0.1  # validation split taken from the training set (model selection never sees the test set)
MODELS_KEPT = 6  # traced models kept (a seed sweep cycles through one input normalisation per seed)
INITIAL_KEPT = 12  # (architecture, seed) initial weights kept; a ResNet56's weights are 3.4 MB


# ---------------------------------------------------------------- the model and its optimizer
def make_optimizer(name: str, lr: float) -> keras.optimizers.Optimizer:
    """A new optimizer of the paper's kind `name` with constant learning rate `lr` (no schedule)."""
    return {
        "sgd": lambda: keras.optimizers.SGD(lr),
        "momentum": lambda: keras.optimizers.SGD(lr, momentum=MOMENTUM),
        "nesterov": lambda: keras.optimizers.SGD(lr, momentum=MOMENTUM, nesterov=True),
        "adam": lambda: keras.optimizers.Adam(lr),
        "nadam": lambda: keras.optimizers.Nadam(lr),
        "adamax": lambda: keras.optimizers.Adamax(lr),
    }[name]()


def initial_model(
    config: TrainConfig, ds: loading.Dataset, execution: Execution = Execution(), stats: tuple | None = None
) -> keras.Model:
    """The configuration's freshly initialised model (weights from the seed set before), not compiled.
    `stats`: networks.channel_stats(ds.x_train) when the caller has it already."""
    mean, variance = stats or networks.channel_stats(ds.x_train)  # input normalisation from the training set only
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISION_POLICIES[execution.mixed_precision])
    try:
        return networks.resnet(
            networks.depth_of(config.model),
            ds.num_classes,
            ds.input_shape,
            shortcut=config.shortcut,
            init=config.init,
            mean=mean,
            variance=variance,
        )
    finally:
        keras.config.set_dtype_policy(previous)


def compile_model(model: keras.Model, config: TrainConfig, execution: Execution, optimizer=None) -> None:
    model.compile(
        optimizer=optimizer or make_optimizer(config.optimizer, config.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile="auto" if execution.jit_compile is None else execution.jit_compile,
        steps_per_execution=execution.steps_per_execution,
    )


def build_model(config: TrainConfig, ds: loading.Dataset, execution: Execution = Execution()) -> keras.Model:
    """The configuration's new compiled model; like any model, it must follow seed_everything(config.seed)."""
    model = initial_model(config, ds, execution)
    compile_model(model, config, execution)
    return model


def build_state(model: keras.Model, ds: loading.Dataset) -> None:
    """The optimizer's slots and the metrics' variables, built before fit when the fast paths allow."""
    fastpath.build_state(model, (ds.x_train[:2].astype(np.float32), ds.y_train[:2]))


def seed_everything(seed: int) -> None:
    """Every generator a training draws from, set to `seed` (keras.utils.set_random_seed)."""
    fastpath.seed_everything(seed)


# ---------------------------------------------------------------- the data
def load_data(config: TrainConfig, data_dir: str | None = None) -> loading.Dataset:
    """The configuration's data (its subsets, if it names any), its validation split drawn with its seed."""
    return loading.load(
        config.dataset,
        data_dir=data_dir,
        val_fraction=VAL_FRACTION,
        seed=config.seed,
        train_examples=config.train_examples,
        test_examples=config.test_examples,
    )


def steps_per_training_epoch(config: TrainConfig, examples: int) -> int:
    """Optimizer updates in one training epoch: a pass over `examples` at the configuration's batch size, or with
    budget "steps" the updates a pass takes at its reference batch size."""
    return pipelines.steps_per_epoch(
        examples, config.reference_batch_size if config.budget == "steps" else config.batch_size
    )


def training_stream(config: TrainConfig, ds: loading.Dataset, start_epoch: int = 0) -> tuple:
    """(stream for model.fit, steps per epoch): the configuration's batches and augmentation from `start_epoch`.
    With budget "steps" an epoch is the updates one epoch takes at the reference batch size, so every batch size
    gets the same number of optimizer steps (and validation, early stopping, checkpoints count in those units)."""
    return pipelines.training_stream(
        ds.x_train,
        ds.y_train,
        config.batch_size,
        config.seed,
        start_epoch=start_epoch,
        augment=pipelines.augmentation_for(config.dataset),
        end_epoch=config.epochs,
        block_steps=steps_per_training_epoch(config, len(ds.x_train)),
    )


@dataclass
class Prepared:
    """What prepare() made ahead of the next train() of `key` = (config, execution, data_dir)."""

    key: tuple
    dataset: loading.Dataset
    model: keras.Model  # seeded, initialised, its optimizer and metric state built
    stream: tuple  # training_stream(config, dataset)


def architecture_key(config: TrainConfig, ds: loading.Dataset, execution: Execution, stats: tuple) -> tuple:
    """What a traced model is specific to: architecture, input shape and normalisation, execution options."""
    stats_key = hashlib.sha1(b"".join(np.asarray(a, np.float64).tobytes() for a in stats)).hexdigest()
    return (
        config.model,
        config.shortcut,
        config.init,
        ds.num_classes,
        ds.input_shape,
        stats_key,
        execution.mixed_precision,
        execution.jit_compile,
        execution.steps_per_execution,
    )


def fresh_optimizer_state(model: keras.Model, config: TrainConfig) -> None:
    """Gives a traced model's optimizer (of config.optimizer's type) the state of a newly built one: iterations,
    learning rate and every slot, as Keras builds them for this optimizer (Nadam's u_product starts at 1,
    Adagrad's accumulators at 0.1, ...)."""
    if not model.optimizer.built:  # kept before its first step: build it as its first step would
        model.optimizer.build(model.trainable_variables)
    fresh = make_optimizer(config.optimizer, config.lr)
    fresh.build(model.trainable_variables)
    kept = model.optimizer.variables
    if [v.shape for v in kept] != [v.shape for v in fresh.variables]:
        raise RuntimeError(f"{type(model.optimizer).__name__}'s variables do not match a new one's")
    for variable, value in zip(kept, fresh.variables):
        variable.assign(value)


def _keep(cache: OrderedDict, key, value, most: int):
    """cache[key] = value as the most recently used; the least recently used beyond `most` dropped."""
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > most:
        cache.popitem(last=False)
    return value


class SweepCache:
    """Traced models, initial weights and the one prepared configuration of this process's sweep."""

    def __init__(self):
        self.models: OrderedDict = OrderedDict()  # architecture key -> (model, its optimizer's name)
        # (architecture key, seed) -> (initial weights, Python's generator state after the build): a build of a
        # Keras ResNet only to read its initial weights costs 0.12-0.8 s; its unseeded initialisers draw from
        # Python's generator, so restoring its state makes a cached initialisation a new build (tests)
        self.initial: OrderedDict = OrderedDict()
        self.prepared: Prepared | None = None

    def model_for(self, config: TrainConfig, ds: loading.Dataset, execution: Execution) -> keras.Model:
        """build_model's model, initialised identically, but the kept traced model when one fits.
        Like build_model, it must follow seed_everything(config.seed)."""
        stats = networks.channel_stats(ds.x_train)
        key = architecture_key(config, ds, execution, stats)
        model, optimizer = self.models.pop(key, (None, None))
        if model is None or execution.mixed_precision == "fp16":  # fp16: compile wraps the optimizer
            model = initial_model(config, ds, execution, stats)
            _keep(self.initial, (key, config.seed), (model.get_weights(), random.getstate()), INITIAL_KEPT)
            compile_model(model, config, execution)
        else:
            model.set_weights(self._initial_weights(config, ds, execution, key, stats))
            if optimizer == config.optimizer:
                fresh_optimizer_state(model, config)
            elif not fastpath.swap_optimizer(model, make_optimizer(config.optimizer, config.lr)):
                compile_model(model, config, execution)
        _keep(self.models, key, (model, config.optimizer), MODELS_KEPT)
        return model

    def _initial_weights(self, config, ds, execution, key: tuple, stats: tuple) -> list:
        """initial_model(...).get_weights() right after seed_everything(config.seed), built or remembered."""
        cached = self.initial.get((key, config.seed))
        if cached is None:
            weights = initial_model(config, ds, execution, stats).get_weights()
        else:
            weights = cached[0]
            random.setstate(cached[1])  # where the build would have left it
        return _keep(self.initial, (key, config.seed), (weights, random.getstate()), INITIAL_KEPT)[0]

    def prepare(self, config: TrainConfig, data_dir: str | None = None, execution: Execution = Execution()) -> None:
        """Does ahead of train(config) what a new training run does first without the tracking store: load the
        data, seed, initialise the model and build its state, build the training stream. A study runs it while
        its claim on the configuration settles. The next train() of the same configuration, data folder and
        execution takes it over; any other train() discards it. Nothing in between draws from a generator that
        training reads, so the weights are those of an unprepared train() (tests)."""
        self.prepared = None
        ds = load_data(config, data_dir)
        seed_everything(config.seed)
        model = self.model_for(config, ds, execution)
        build_state(model, ds)
        self.prepared = Prepared((config, execution, data_dir), ds, model, training_stream(config, ds))

    def take_prepared(self, config: TrainConfig, execution: Execution, data_dir: str | None) -> Prepared | None:
        """prepare()'s work if it was for this configuration; any other is dropped."""
        prepared, self.prepared = self.prepared, None
        return prepared if prepared is not None and prepared.key == (config, execution, data_dir) else None
