"""The fast paths (lrnoise.training.fastpath) change no number, and one gate turns them all off."""

import dataclasses
import random
import re
import threading
import zipfile

import keras
import numpy as np
import pytest

from lrnoise.config import Execution, TrainConfig
from lrnoise.data import loading, pipelines
from lrnoise.training import build, fastpath, networks
from lrnoise.training.build import SweepCache

CONFIG = TrainConfig(dataset="digits", model="resnet8", optimizer="adam", batch_size=64, epochs=1, seed=1)


def test_the_gate_is_open_only_on_the_checked_keras_and_closes_with_the_variable(monkeypatch):
    monkeypatch.delenv(fastpath.ENV, raising=False)
    monkeypatch.setattr(keras, "__version__", f"{fastpath.CHECKED_KERAS}.9")
    assert fastpath.enabled()
    monkeypatch.setenv(fastpath.ENV, "0")
    assert not fastpath.enabled()
    monkeypatch.setenv(fastpath.ENV, "1")
    monkeypatch.setattr(keras, "__version__", "3.99.0")  # another Keras: plain Keras's public route
    assert not fastpath.enabled()


def sweep_then_save(tmp_path, name: str) -> tuple[list, dict]:
    """A small sweep (Adam at two lrs on one traced model, then Nadam: same type, then another) and a save of
    the last model in a new thread (Keras's save state is per thread): (weights after each, (the saved config,
    the restored weights and optimizer state))."""
    ds = build.load_data(CONFIG)
    sweep, weights = SweepCache(), []
    for optimizer, lr in (("adam", 0.001), ("adam", 0.003), ("nadam", 0.002)):
        config = TrainConfig(**{**CONFIG.params(), "optimizer": optimizer, "lr": lr})
        build.seed_everything(config.seed)
        model = sweep.model_for(config, ds, Execution())
        build.build_state(model, ds)
        stream, steps = build.training_stream(config, ds)
        model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0)
        weights.append([np.array(w) for w in model.get_weights() + list(model.optimizer.variables)])

    def save():
        fastpath.cache_save_skipsets()
        model.save(tmp_path / f"{name}.keras")

    thread = threading.Thread(target=save)
    thread.start()
    thread.join()
    with zipfile.ZipFile(tmp_path / f"{name}.keras") as saved:
        config = saved.read("config.json").decode()
    config = re.sub(r'"shared_object_id": \d+', "", config)  # an object's id()
    config = re.sub(r'"name": "(nadam|adam)(_\d+)?"', r'"name": "\1"', config)  # a per-process name counter
    restored = keras.models.load_model(tmp_path / f"{name}.keras")
    return weights, (config, [np.array(v) for v in restored.weights + list(restored.optimizer.variables)])


@pytest.mark.e2e
def test_fast_paths_on_and_off_train_the_same_weights_and_save_the_same_model(tmp_path, monkeypatch):
    assert fastpath.enabled(), "run where the fast paths apply (Keras " + fastpath.CHECKED_KERAS + ")"
    fast = sweep_then_save(tmp_path, "fast")
    monkeypatch.setenv(fastpath.ENV, "0")
    plain = sweep_then_save(tmp_path, "plain")
    for got, want in zip(fast[0], plain[0]):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    assert fast[1][0] == plain[1][0]
    for a, b in zip(fast[1][1], plain[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_seed_everything_resets_every_generator_a_training_draws_from():
    """Called twice with one seed (the second time without re-seeding TensorFlow, which would clear its graph
    caches), it leaves Python's, NumPy's and Keras's generators exactly where keras.utils.set_random_seed does."""

    def draws():
        weights = networks.resnet(8, 3, (8, 8, 1)).get_weights()  # seed-less initialisers: Keras's global generator
        return [random.random(), np.random.rand(), *np.array(keras.random.uniform((3,))), *weights[0].ravel()]

    keras.utils.set_random_seed(7)
    reference = draws()
    for _ in range(2):  # the second call takes the path that leaves TensorFlow's seed alone
        fastpath.seed_everything(7)
        assert draws() == reference
    fastpath.seed_everything(8)
    assert draws() != reference


@pytest.mark.slow
def test_a_training_step_built_ahead_is_traced_once_and_trains_as_plain_keras(monkeypatch):
    """build_state creates the optimizer slots and metric variables before fit: under TensorFlow the training
    step is then traced once instead of twice, and the weights are those of a plain Keras fit."""
    full = loading.load("digits", val_fraction=0.1, seed=0)
    ds = dataclasses.replace(full, x_train=full.x_train[:256], y_train=full.y_train[:256])  # 4 steps an epoch

    def fit():
        fastpath.seed_everything(CONFIG.seed)
        model = networks.resnet(8, ds.num_classes, ds.input_shape)
        build.compile_model(model, CONFIG, Execution())
        build.build_state(model, ds)
        traces, step = [], model.train_step
        model.train_step = lambda batch: traces.append(1) or step(batch)  # runs once per trace, not per step
        stream, steps = pipelines.training_stream(ds.x_train, ds.y_train, CONFIG.batch_size, CONFIG.seed)
        model.fit(stream, steps_per_epoch=steps, epochs=2, verbose=0)
        return len(traces), model.get_weights()

    traces, prebuilt = fit()
    monkeypatch.setenv(fastpath.ENV, "0")
    plain_traces, plain = fit()
    if keras.backend.backend() == "tensorflow":
        assert (traces, plain_traces) == (1, 2)
    for a, b in zip(prebuilt, plain):
        np.testing.assert_array_equal(a, b)


def test_cached_save_skipsets_are_found_by_keras():
    """Keras 3.15 stores its per-type skip sets under one key and reads them under another; with the cache, a
    lookup finds the stored set and builds no reference Layer."""
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    fastpath.cache_save_skipsets()
    built = []
    original = keras.layers.Layer.__init__
    try:
        keras.layers.Layer.__init__ = lambda self, *a, **k: built.append(1) or original(self, *a, **k)
        found = saving_lib.get_attr_skipset("Layer")
    finally:
        keras.layers.Layer.__init__ = original
    assert found is global_state.get_global_attribute("saving_attr_skiplist_Layer") and not built
