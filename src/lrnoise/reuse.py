"""What one process keeps between the configurations of a sweep, in one explicit object (SweepCache).

Tracing a model's training, validation and gradient-noise steps costs ~3-6 s on a CPU, more than a short
configuration's learning, and a sweep's configurations mostly share an architecture. A configuration with the
same architecture, input normalisation and execution options as an earlier one therefore starts from that
earlier model: its weights become the configuration's own freshly initialised ones, and its optimizer gets
the state of a newly built optimizer of its kind (the same type: the new optimizer's values are copied into
the traced one, whose variables the traced step reads; another type: the new optimizer itself, so the step is
traced again). The same seed gives bit-identical weights alone and inside a sweep, for every optimizer
(tests/test_reuse.py). The input normalisation is part of the key because Keras bakes its mean and variance
into the traced graph as constants.
"""
from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass

import keras
import numpy as np

from lrnoise import data, fastpath, models
from lrnoise.config import Execution, TrainConfig
from lrnoise.train import (build_state, compile_model, initial_model, load_data, make_optimizer, seed_everything,
                           training_stream)

MODELS_KEPT = 6  # traced models kept (a seed sweep cycles through one input normalisation per seed)
INITIAL_KEPT = 12  # (architecture, seed) initial weights kept; a ResNet56's weights are 3.4 MB


@dataclass
class Prepared:
    """What prepare() made ahead of the next train() of `key` = (config, execution, data_dir)."""
    key: tuple
    dataset: data.Dataset
    model: keras.Model  # seeded, initialised, its optimizer and metric state built
    stream: tuple  # training_stream(config, dataset)


def architecture_key(config: TrainConfig, ds: data.Dataset, execution: Execution, stats: tuple) -> tuple:
    """What a traced model is specific to: architecture, input shape and normalisation, execution options."""
    stats_key = hashlib.sha1(b"".join(np.asarray(a, np.float64).tobytes() for a in stats)).hexdigest()
    return (config.model, config.shortcut, config.init, ds.num_classes, ds.input_shape,
            stats_key, execution.mixed_precision, execution.jit_compile, execution.steps_per_execution)


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

    def model_for(self, config: TrainConfig, ds: data.Dataset, execution: Execution) -> keras.Model:
        """train.build_model's model, initialised identically, but the kept traced model when one fits.
        Like build_model, it must follow seed_everything(config.seed)."""
        stats = models.channel_stats(ds.x_train)
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
