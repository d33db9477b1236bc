"""Speed paths that reach into Keras's private internals: all of them here, behind one gate.

Each one does what a public Keras call does, with less work, and changes no number (tests/test_fastpath.py
trains the same weights with the gate open and closed). The gate opens only on the Keras minor version they
were read against (CHECKED_KERAS) and unless LRNOISE_FAST_PATHS=0; closed, every function below takes plain
Keras's public route. What each saves:

- seed_everything: skips re-seeding TensorFlow when its global seed already is the configuration's
  (tf.random.set_seed clears graph caches, so every configuration of a sweep would trace again);
- build_state: builds optimizer and metric variables before the first step, so the step is traced once
  instead of twice;
- swap_optimizer: a traced model takes an optimizer of another type without model.compile, keeping its traced
  validation step and metrics;
- cache_save_skipsets: lets model.save find Keras's per-type skip sets instead of rebuilding them per save.
Together, on the main job (the demo study): benchmarks/fastpath.py, figures in benchmarks/results.json.
"""

from __future__ import annotations

import os
import random

import keras
import numpy as np

CHECKED_KERAS = "3.15"  # the Keras minor version these paths were read against (with TensorFlow 2.21)
ENV = "LRNOISE_FAST_PATHS"  # "0" closes the gate


def enabled() -> bool:
    """The gate: open on CHECKED_KERAS unless LRNOISE_FAST_PATHS=0 (read at every call, so tests can flip it)."""
    minor = ".".join(keras.__version__.split(".")[:2])
    return os.environ.get(ENV, "1") != "0" and minor == CHECKED_KERAS


_tf_seed: list = []  # the seed TensorFlow's global generator was last given in this process (a process global)


def seed_everything(seed: int) -> None:
    """keras.utils.set_random_seed(seed): Python's, NumPy's, the backend's and Keras's generators.

    Nothing lrnoise runs draws from TensorFlow's global generator (initialisers and the data pipeline use
    explicit seeds), so when it already holds `seed` the fast path leaves it alone and resets the rest as
    set_random_seed does (Keras's global seed and seed generator: private state)."""
    if not (enabled() and _tf_seed == [seed]):
        keras.utils.set_random_seed(seed)
        _tf_seed[:] = [seed]
        return
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def build_state(model: keras.Model, sample: tuple) -> None:
    """Creates a compiled model's optimizer slots and metric variables now, from one batch `sample` (x, y).

    Under TensorFlow, Keras creates them while tracing the first training step and then traces the whole step a
    second time (a function that created variables is traced again). Built here (Keras's own private
    _symbolic_build), the step is traced once; the variables start as in the trace. Gate closed: Keras builds
    them lazily, as it always does."""
    if enabled():
        model._symbolic_build(data_batch=tuple(keras.ops.convert_to_tensor(a) for a in sample))


def swap_optimizer(model: keras.Model, optimizer) -> bool:
    """Gives a compiled model `optimizer` (another type than its own) as model.compile would, keeping the loss,
    metrics and traced validation step: only the training step is traced again. Sets what Keras 3.15's compile
    sets for an optimizer (the optimizer, the compile config a saved model restores it from, no training
    function), untracked as compile sets them. Not for a loss-scaled (fp16) model, whose optimizer compile
    wraps. False when the gate is closed: then the caller compiles."""
    if not enabled():
        return False
    from keras.src.saving.serialization_lib import SerializableDict
    from keras.src.utils.tracking import DotNotTrackScope

    compiled = model._compile_config.config
    with DotNotTrackScope():
        model.optimizer = optimizer
        model._compile_config = SerializableDict(**{**compiled, "optimizer": optimizer})
        model.train_function = None
        model.stop_training = False
    return True


SAVEABLE_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")  # Keras's kinds


def cache_save_skipsets() -> None:
    """Lets model.save reuse Keras's per-type sets of attributes to skip, as Keras means it to (same files).

    Keras 3.15's saving_lib.get_attr_skipset stores each set under "saving_attr_skipset_<type>" but looks it up
    under "saving_attr_skiplist_<type>", so it builds reference objects again for every saveable object (89
    times per ResNet20 save). This stores each set, computed by Keras itself, under the key it is read by.
    Keras's global state is per thread: call it in the thread that saves."""
    if not enabled():
        return
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    for obj_type in SAVEABLE_TYPES:
        key = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(key) is None:
            global_state.set_global_attribute(key, saving_lib.get_attr_skipset(obj_type))
