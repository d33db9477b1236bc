"""A sweep's reuse of traced models (build.SweepCache) changes no number: alone or inside a sweep, the same weights."""

import random

import keras
import numpy as np
import pytest

from lrnoise import config, names
from lrnoise.config import Execution, TrainConfig
from lrnoise.data import loading
from lrnoise.errors import LrnoiseError
from lrnoise.paper import OPTIMIZERS
from lrnoise.training import build
from lrnoise.training.build import SweepCache, fresh_optimizer_state

BASE = TrainConfig(dataset="digits", model="resnet8", batch_size=64, epochs=1, seed=2, patience=0)
FIT_STEPS = 4  # optimizer steps per fit: any difference in weights or optimizer state shows after the first


def fit_weights(config: TrainConfig, ds: loading.Dataset, sweep: SweepCache | None) -> list:
    """The model path train() takes for a new run (seed, model, state, fit), without the tracking store."""
    build.seed_everything(config.seed)
    model = sweep.model_for(config, ds, Execution()) if sweep else build.build_model(config, ds)
    build.build_state(model, ds)
    stream, _ = build.training_stream(config, ds)
    model.fit(stream, steps_per_epoch=FIT_STEPS, epochs=config.epochs, verbose=0)
    return [np.array(w) for w in model.get_weights()] + [np.array(v) for v in model.optimizer.variables]


@pytest.mark.e2e
def test_every_optimizer_trains_the_same_weights_alone_and_inside_a_sweep():
    """One process sweeps the six optimizers over two lrs on one architecture and seed, so every configuration
    after the first reuses the traced model: with the same optimizer type (its state made new) or another
    (a new optimizer). Each second lr is then trained alone, from a newly built model: bit for bit alike,
    weights and optimizer state."""
    ds = build.load_data(BASE)
    sweep = SweepCache()
    in_sweep = {}
    for optimizer in OPTIMIZERS:
        for lr in (0.001, 0.003):
            config = TrainConfig(**{**BASE.params(), "optimizer": optimizer, "lr": lr})
            in_sweep[config] = fit_weights(config, ds, sweep)
    assert len(sweep.models) == 1  # one traced model served the whole sweep
    for config, got in in_sweep.items():
        if config.lr == 0.003:
            alone = fit_weights(config, ds, None)
            assert len(alone) == len(got), config.optimizer
            for a, b in zip(alone, got):
                np.testing.assert_array_equal(a, b, err_msg=config.optimizer)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_kept_optimizer_gets_a_new_optimizers_state(optimizer):
    """After training steps, fresh_optimizer_state leaves every optimizer variable (iterations, learning rate,
    slots; Nadam's u_product starts at 1, not 0) as a newly built optimizer of the kind has it."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    config = TrainConfig(optimizer=optimizer, lr=0.01)
    build.compile_model(model, config, Execution())
    x, y = np.random.default_rng(0).normal(size=(8, 3)).astype("float32"), np.arange(8) % 2
    model.fit(x, y, epochs=2, verbose=0)
    config = TrainConfig(optimizer=optimizer, lr=0.02)
    fresh_optimizer_state(model, config)
    new = build.make_optimizer(optimizer, 0.02)
    new.build(model.trainable_variables)
    assert len(model.optimizer.variables) == len(new.variables)
    for kept, want in zip(model.optimizer.variables, new.variables):
        np.testing.assert_array_equal(np.asarray(kept), np.asarray(want), err_msg=kept.path)


def test_cached_initial_weights_are_a_new_build_and_leave_the_generators_alike():
    """After its first build of (architecture, seed), a SweepCache takes the initial weights from memory (no
    Keras build): the weights, and Python's generator that a build draws from, are as after a new build."""
    config = TrainConfig(dataset="digits", model="resnet8", seed=3)
    ds = build.load_data(config)

    def built(make) -> tuple:
        build.seed_everything(config.seed)
        model = make()
        return [np.array(w) for w in model.get_weights()], random.random(), np.random.rand()

    fresh = built(lambda: build.build_model(config, ds))
    sweep = SweepCache()
    first = built(lambda: sweep.model_for(config, ds, Execution()))  # a new model, its weights remembered
    calls = []
    original = build.initial_model
    build.initial_model = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = built(lambda: sweep.model_for(TrainConfig(**{**config.params(), "lr": 0.01}), ds, Execution()))
    finally:
        build.initial_model = original
    assert calls == []  # from memory, no build
    for got in (first, again):
        assert len(fresh[0]) == len(got[0]) and all(np.array_equal(a, b) for a, b in zip(fresh[0], got[0]))
        assert got[1:] == fresh[1:]  # Python's and NumPy's next draws


def test_a_prepared_configuration_is_taken_once_and_only_by_itself():
    config = TrainConfig(dataset="digits", model="resnet8", seed=1)
    sweep = SweepCache()
    sweep.prepare(config)
    assert sweep.take_prepared(TrainConfig(**{**config.params(), "lr": 0.01}), Execution(), None) is None
    assert sweep.prepared is None  # another configuration drops it
    sweep.prepare(config)
    prepared = sweep.take_prepared(config, Execution(), None)
    assert prepared is not None and prepared.model is sweep.models[next(iter(sweep.models))][0]
    assert sweep.take_prepared(config, Execution(), None) is None  # taken once


def test_a_steps_budget_gives_every_batch_size_the_updates_of_the_reference_batch_sizes_epochs():
    steps = TrainConfig(batch_size=8, epochs=10, budget="steps", reference_batch_size=32)
    assert build.steps_per_training_epoch(steps, 1617) == 51  # ceil(1617 / 32), whatever batch_size is
    assert build.steps_per_training_epoch(TrainConfig(batch_size=8), 1617) == 203  # epochs budget: one pass
    assert steps.params()["budget"] == "steps" and steps.params()["reference_batch_size"] == 32
    assert TrainConfig.from_params({k: str(v) for k, v in steps.params().items()}) == steps
    assert "budget" not in TrainConfig().params()  # an epochs-budget run keeps the params (and key) it always had
    assert steps.run_name.endswith("-b8-steps32-s0") and "steps" not in TrainConfig().run_name


def test_a_subset_is_part_of_the_configuration_and_the_whole_set_is_no_subset():
    subset = TrainConfig(dataset="fashion_mnist", train_examples=4000, test_examples=1000).validate()
    assert (subset.params()["train_examples"], subset.params()["test_examples"]) == (4000, 1000)
    assert TrainConfig.from_params({k: str(v) for k, v in subset.params().items()}) == subset
    assert subset.run_name.startswith("fashion_mnist-n4000-t1000-resnet20-")
    whole = TrainConfig(dataset="fashion_mnist")
    assert "train_examples" not in whole.params() and "test_examples" not in whole.params()
    asked_whole = TrainConfig(dataset="fashion_mnist", train_examples=60000, test_examples=10000)
    assert asked_whole == whole  # the whole set however it is asked for: one configuration, one key
    keys = {
        names.config_key(c.params()) for c in (subset, whole, TrainConfig(dataset="fashion_mnist", test_examples=1000))
    }
    assert len(keys) == 3
    assert config.describe_data(config.data_name("fashion_mnist", 4000, 1000)) == (
        "fashion_mnist (4,000 of 60,000 training images; 1,000 of 10,000 test images)"
    )
    assert config.describe_data(config.data_name("digits", float("nan"), None)) == "digits"  # a table's NaN: all


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("budget", "updates", "unknown budget 'updates': choose one of epochs, steps"),
        ("reference_batch_size", 0, ">= 1"),
        ("reference_batch_size", 64, "reference_batch_size is for budget steps"),  # with an epochs budget
    ],
)
def test_a_bad_budget_is_refused_in_one_line(field, value, message):
    budget = {"budget": "steps", "patience": 0} if (field, value) == ("reference_batch_size", 0) else {}
    with pytest.raises(LrnoiseError, match=message):
        TrainConfig(**{**budget, field: value}).validate()
