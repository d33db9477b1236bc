"""Training one model: constant learning rate (the variable under study), early stopping on validation
loss with the best weights restored ("until convergence"), a checkpoint every epoch, all tracked in MLflow.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import keras
import numpy as np

from lrnoise import data, gradnoise, models, stats, tracking
from lrnoise.paper import OPTIMIZERS  # the paper's six, in its order
from lrnoise.errors import LrnoiseError

MOMENTUM = 0.9  # for the momentum / nesterov SGD variants (the paper does not say; 0.9 is the usual value)
VAL_FRACTION = 0.1  # validation split taken from the training set (model selection never sees the test set)
EVAL_BATCH = 1000  # batch size for clean test accuracy


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

    def validate(self) -> "TrainConfig":
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
        return self

    def params(self) -> dict:
        return asdict(self)

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


PRECISION_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    model_version: str
    baseline_accuracy: float
    epochs_trained: int
    model: keras.Model | None = field(default=None, repr=False, compare=False)  # the trained model, in memory
    dataset: data.Dataset | None = field(default=None, repr=False, compare=False)  # and its data (no reload)
    evaluator: models.Evaluator | None = field(default=None, repr=False, compare=False)  # a_0's, on the test set


_TF_SEED: list = []  # the seed TensorFlow's global generator was last given in this process


def seed_everything(seed: int) -> None:
    """keras.utils.set_random_seed(seed), without re-seeding TensorFlow when its global seed already is `seed`.

    tf.random.set_seed clears TensorFlow's caches, so the next training step re-optimises its graph: ~1.2 s per
    configuration of a sweep on a CPU, more than an epoch of the demo. Nothing lrnoise runs draws from
    TensorFlow's global generator (Keras initialisers and the data pipeline use stateless ops with explicit
    seeds), so skipping it changes no number; the Keras seed generator, Python's, NumPy's and torch's are reset
    every time. (test_train compares a configuration alone and inside a sweep bit for bit.)
    """
    if _TF_SEED == [seed]:
        try:  # keras' private global state, as keras.utils.set_random_seed writes it (tested with keras 3.15)
            from keras.src.backend.common import global_state
            from keras.src.random import seed_generator
            from keras.src.utils import rng_utils
            global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
            global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
        except (ImportError, AttributeError):  # another keras: the public call, at the cost of the cache clear
            keras.utils.set_random_seed(seed)
            return
        random.seed(seed)
        np.random.seed(seed)
        if keras.backend.backend() == "torch":
            import torch
            torch.manual_seed(seed)
        return
    keras.utils.set_random_seed(seed)
    _TF_SEED[:] = [seed]


_TRIMMED: list = []  # [True] once trim_graph_rewrites has run in this process


def trim_graph_rewrites() -> None:
    """Skips the Grappler passes that change no number in lrnoise's CPU graphs, once per process.

    TensorFlow rewrites each traced function before its first run (~1.1 s for a digits ResNet20's training step on
    the AVX2 machine), and a sweep traces one step per architecture and optimizer type. On a CPU the layout pass
    (NHWC stays NHWC), the memory pass (nothing is swapped to host memory) and Grappler's second round of all passes
    are skipped: ~0.25-0.6 s less per traced training step there (README). test_train compares weights, gradient
    noise and noisy outputs with and without this, bit for bit. TensorFlow backend without a GPU only (there the
    layout pass matters). Call it before the process's first training: a thread that already ran a tf.function keeps
    its options. It writes the eager context's base config (private, tensorflow 2.21); a TensorFlow without it:
    nothing happens."""
    if _TRIMMED or keras.backend.backend() != "tensorflow":
        return
    _TRIMMED.append(True)
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        return
    try:
        from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
        from tensorflow.python.eager import context
        ctx = context.context()
        if ctx._config is None:
            ctx._config = config_pb2.ConfigProto()
        rewrites = ctx._config.graph_options.rewrite_options
        rewrites.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
        rewrites.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    except (ImportError, AttributeError):
        return
    # public; also makes this thread's function-call options pick up the config above
    tf.config.optimizer.set_experimental_options({"layout_optimizer": False})


SAVEABLE_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")  # Keras's kinds


def cache_save_skipsets() -> None:
    """Lets model.save reuse Keras's per-type sets of attributes to skip, as Keras means it to (same files).

    keras 3.15's saving_lib.get_attr_skipset stores each set under "saving_attr_skipset_<type>" but looks it up
    under "saving_attr_skiplist_<type>": it never finds it, and builds reference Layer, Operation, ... objects
    again for every saveable object, 89 times per ResNet20 save (model.save of a digits ResNet20: 276 -> 148 ms,
    AVX2 machine). This stores each set, computed by Keras itself, under the key it is read by. The sets depend
    on the type only, so the saved files are the same (test_train). Keras's global state is per thread: call it
    in the thread that saves. Another keras without these names: nothing happens.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib
        for obj_type in SAVEABLE_TYPES:
            key = f"saving_attr_skiplist_{obj_type}"
            if global_state.get_global_attribute(key) is None:
                global_state.set_global_attribute(key, saving_lib.get_attr_skipset(obj_type))
    except (ImportError, AttributeError, ValueError):
        return


def make_optimizer(name: str, lr: float):
    return {
        "sgd": lambda: keras.optimizers.SGD(lr),
        "momentum": lambda: keras.optimizers.SGD(lr, momentum=MOMENTUM),
        "nesterov": lambda: keras.optimizers.SGD(lr, momentum=MOMENTUM, nesterov=True),
        "adam": lambda: keras.optimizers.Adam(lr),
        "nadam": lambda: keras.optimizers.Nadam(lr),
        "adamax": lambda: keras.optimizers.Adamax(lr),
    }[name]()


def initial_model(config: TrainConfig, ds: data.Dataset, execution: Execution = Execution(),
                  stats: tuple | None = None) -> keras.Model:
    """The configuration's freshly initialised model (weights from the seed set before), not compiled.
    `stats`: models.channel_stats(ds.x_train) when the caller has it already."""
    mean, variance = stats or models.channel_stats(ds.x_train)  # input normalisation from the training set only
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISION_POLICIES[execution.mixed_precision])
    try:
        return models.resnet(models.depth_of(config.model), ds.num_classes, ds.input_shape,
                             shortcut=config.shortcut, init=config.init, mean=mean, variance=variance)
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(config: TrainConfig, ds: data.Dataset, execution: Execution = Execution()) -> keras.Model:
    model = initial_model(config, ds, execution)
    compile_model(model, config, execution)
    return model


# Compiled models kept for the next configuration of the same shape in this process: tracing the training, validation
# and gradient-noise steps costs ~3-6 s on a CPU, more than a short configuration's learning. A configuration with the
# same (architecture, input normalisation, execution) reuses one: its weights are overwritten with the configuration's
# own freshly initialised ones and the optimizer's state zeroed, its learning rate (a variable read by the traced
# step) set, so the same seed gives bit-identical weights. Another optimizer type gets a new optimizer
# (swap_optimizer: the training step is traced again around the kept forward and backward pass,
# share_forward_backward; the validation step, the gradient-noise function and the inference twin are kept). The input
# normalisation is part of the key because Keras bakes a given mean / variance into the traced graph as constants
# (they follow the seed's validation split).
_COMPILED: dict = {}
COMPILED_KEPT = 6  # models kept (a seed sweep cycles through one normalisation per seed)
# The initial weights of (architecture key, seed), and Python's generator as building them left it: a sweep's
# configurations differ in lr or optimizer, not in their initial weights, and building a Keras ResNet only to
# read them costs 0.12-0.8 s. Keras's unseeded initialisers take their seeds from Python's generator (reset by
# seed_everything just before), the only generator a build draws from; restoring its state makes a cached
# initialisation indistinguishable from a new build (test_train).
_INITIAL: dict = {}
INITIAL_KEPT = 12  # (architecture, seed) pairs; a ResNet56's weights are 3.4 MB


def _compiled_key(config: TrainConfig, ds: data.Dataset, execution: Execution, stats: tuple) -> tuple:
    stats_key = hashlib.sha1(b"".join(np.asarray(a, np.float64).tobytes() for a in stats)).hexdigest()
    return (config.model, config.shortcut, config.init, ds.num_classes, ds.input_shape,
            stats_key, execution.mixed_precision, execution.jit_compile, execution.steps_per_execution)


def _initial_weights(config: TrainConfig, ds: data.Dataset, execution: Execution, key: tuple, stats: tuple) -> list:
    """initial_model(...).get_weights() right after seed_everything(config.seed), from _INITIAL when cached."""
    cached = _INITIAL.get((key, config.seed))
    if cached is None:
        return _remember_initial(key, config.seed, initial_model(config, ds, execution, stats).get_weights())
    random.setstate(cached[1])  # where the build would have left it
    return _remember_initial(key, config.seed, cached[0])


def _remember_initial(key: tuple, seed: int, weights: list) -> list:
    """Caches `weights` (just built or just reused) with Python's generator state now; returns them."""
    _INITIAL.pop((key, seed), None)
    _INITIAL[(key, seed)] = (weights, random.getstate())  # most recently used last
    while len(_INITIAL) > INITIAL_KEPT:
        _INITIAL.pop(next(iter(_INITIAL)))
    return weights


def reusable_model(config: TrainConfig, ds: data.Dataset, execution: Execution) -> keras.Model:
    """build_model's model, initialised identically, but reusing an already-traced model when one fits.
    Like build_model, it must follow seed_everything(config.seed)."""
    stats = models.channel_stats(ds.x_train)
    key = _compiled_key(config, ds, execution, stats)
    model, optimizer = _COMPILED.pop(key, (None, None))  # optimizer: the name it is compiled with
    if model is None or execution.mixed_precision == "fp16":  # fp16's loss-scale state is not plain zeros
        model = initial_model(config, ds, execution, stats)  # same seeded initialisation as build_model
        _remember_initial(key, config.seed, model.get_weights())
        compile_model(model, config, execution)
    else:
        model.set_weights(_initial_weights(config, ds, execution, key, stats))
        if optimizer == config.optimizer:
            for variable in model.optimizer.variables:  # iterations, moments, velocities: as a new optimizer's
                variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
            model.optimizer.learning_rate.assign(config.lr)
        else:  # another optimizer: a new one (and the training step traced again, its update only)
            swap_optimizer(model, config, execution)
    _COMPILED[key] = (model, config.optimizer)  # most recently used last
    while len(_COMPILED) > COMPILED_KEPT:
        _COMPILED.pop(next(iter(_COMPILED)))
    return model


def load_data(config: TrainConfig, data_dir: str | None = None) -> data.Dataset:
    """The configuration's data, its validation split drawn with its seed."""
    return data.load(config.dataset, data_dir=data_dir, val_fraction=VAL_FRACTION, seed=config.seed)


def training_stream(config: TrainConfig, ds: data.Dataset, start_epoch: int = 0) -> tuple:
    """(stream for model.fit, steps per epoch): the configuration's batches and augmentation from `start_epoch`."""
    return data.training_stream(ds.x_train, ds.y_train, config.batch_size, config.seed, start_epoch=start_epoch,
                                augment=data.augmentation_for(config.dataset), end_epoch=config.epochs)


@dataclass
class Prepared:
    """What prepare() made for the next train() of `key` = (config, execution, data_dir)."""
    key: tuple
    dataset: data.Dataset
    model: keras.Model  # seeded, initialised, its optimizer and metric state built
    stream: tuple  # training_stream(config, dataset)


_PREPARED: list[Prepared] = []  # at most one: the configuration prepared last


def prepare(config: TrainConfig, data_dir: str | None = None, execution: Execution = Execution()) -> None:
    """Does ahead of train(config) what a new training run does first without the tracking store: load the data,
    seed, initialise the model (reusable_model) and build its state, build the training stream. A study runs it
    while its claim on the configuration settles (tracking.claimed). The next train() of the same configuration,
    data folder and execution in a new run takes them over; any other train() discards them. Nothing between
    the two draws from a random generator that training reads, so the weights are those of an unprepared
    train() (test_train compares them bit for bit)."""
    _PREPARED.clear()
    trim_graph_rewrites()
    ds = load_data(config, data_dir)
    seed_everything(config.seed)
    model = reusable_model(config, ds, execution)
    build_state(model, ds)
    _PREPARED.append(Prepared((config, execution, data_dir), ds, model, training_stream(config, ds)))


def _take_prepared(key: tuple) -> Prepared | None:
    """prepare()'s work if it was for `key`; any other is dropped (reusable_model re-initialises its model)."""
    prepared = _PREPARED.pop() if _PREPARED else None
    return prepared if prepared is not None and prepared.key == key else None


def build_state(model: keras.Model, ds: data.Dataset) -> None:
    """Creates the optimizer's slots and the compiled metrics' variables now, before fit.

    Under TensorFlow, Keras creates them while tracing the first training step; tf.function then traces the
    whole step a second time (a function that created variables is traced again without creating them): ~3 s
    of a ResNet20's first epoch with Adam, ~4 s with ResNet32. Built here, the step is traced once. The new
    variables start as they would in the trace (zeros), so the weights are bit-identical (test_train).
    """
    sample = (ds.x_train[:2].astype(np.float32), ds.y_train[:2])
    try:  # keras' own build of every model, metric and optimizer variable from a batch's shapes
        model._symbolic_build(data_batch=tuple(keras.ops.convert_to_tensor(a) for a in sample))
    except AttributeError:  # another keras: the optimizer at least (public); the metrics stay lazy
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)


def compile_model(model: keras.Model, config: TrainConfig, execution: Execution, optimizer=None) -> None:
    model.compile(optimizer=optimizer or make_optimizer(config.optimizer, config.lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile="auto" if execution.jit_compile is None else execution.jit_compile,
                  steps_per_execution=execution.steps_per_execution)
    share_forward_backward(model)


def share_forward_backward(model: keras.Model) -> None:
    """Gives a compiled model Keras's training step with its forward and backward pass traced as a function of their
    own, which the model keeps: after swap_optimizer only the optimizer's update is traced again.

    Under TensorFlow, Keras traces its whole step (forward, loss, gradients, update, metrics) again for every new
    optimizer, ~0.8 s of it (AVX2 machine) the Python trace of a digits ResNet20's forward and backward pass. The
    step calls the pass's traced function, which TensorFlow inlines into the step's graph before optimising it, and
    applies the gradients itself in Keras 3.15's order: the weights are those of Keras's own step, bit for bit
    (test_train; seconds in the README). Keras's own step stays for other backends and a model class with its own
    step; and, decided each time Keras traces its step, for XLA, eager runs, distribution strategies, several steps
    per execution, sample weights, non-tensor inputs, a loss scale, trainable weights changed since, or a model
    compiled again since."""
    if keras.backend.backend() != "tensorflow":
        return
    try:  # keras 3.15's TensorFlow train_step and its helpers
        from keras.src.backend.common.masking import get_keras_mask, set_keras_mask
        from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
        from keras.src.losses.loss import unscale_loss_for_distribution
        from keras.src.trainers.data_adapters.data_adapter_utils import unpack_x_y_sample_weight
        compiled_state = (model._loss_tracker, model._compile_loss)
        if type(model).train_step is not TensorFlowTrainer.train_step:
            return
    except (ImportError, AttributeError):
        return
    import tensorflow as tf
    keras_step = TensorFlowTrainer.train_step.__get__(model)
    weights = list(model.trainable_weights)  # what the pass differentiates (a step falls back if they change)

    @tf.function(reduce_retracing=True, autograph=False)
    def forward_backward(x, y):
        # B x H x W x C images, B labels -> (B x classes predictions, their mask or None, a gradient per weight)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
            loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=None, training=True)
            model._loss_tracker.update_state(unscale_loss_for_distribution(loss), sample_weight=tf.shape(x)[0])
        return y_pred, get_keras_mask(y_pred), tape.gradient(loss, weights)  # a returned tensor loses its mask

    def train_step(batch):  # runs while Keras traces its step (every step when eager: Keras's step then)
        x, y, sample_weight = unpack_x_y_sample_weight(batch)
        if model._loss_tracker is not compiled_state[0] or model._compile_loss is not compiled_state[1]:
            # compiled again since: a new loss and new metrics
            vars(model).pop("train_step", None)
            return keras_step(batch)
        if (model.run_eagerly or model.jit_compile or model.steps_per_execution != 1 or sample_weight is not None
                or not isinstance(x, tf.Tensor) or tf.distribute.has_strategy()
                or model.optimizer.loss_scale_factor is not None
                or isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
                or len(model.trainable_weights) != len(weights)
                or any(a is not b for a, b in zip(model.trainable_weights, weights))):
            return keras_step(batch)
        y_pred, mask, gradients = forward_backward(x, y)
        if mask is not None:
            set_keras_mask(y_pred, mask)
        model.optimizer.apply_gradients(zip(gradients, weights))
        return model.compute_metrics(x, y, y_pred, sample_weight=None)

    train_step.forward_backward = forward_backward  # its traces can be counted (test_train)
    object.__setattr__(model, "train_step", train_step)  # this model's step; not a tracked Keras attribute


def swap_optimizer(model: keras.Model, config: TrainConfig, execution: Execution) -> None:
    """compile_model(model, config, execution) for a compiled model whose loss, metrics and execution options stay:
    only the optimizer changes, so only the training step's update is traced again. A recompile would drop the
    traced validation step, loss tracker and metrics (~0.6 s of the first epoch of a digits ResNet20 on the AVX2
    machine) and the forward and backward pass (share_forward_backward), and trace and build them again. It sets
    what Keras 3.15's compile sets for an optimizer (model.optimizer, the compile config a saved model is restored
    with, no training function), untracked as compile sets it. Where Keras lacks these attributes (another version),
    and under fp16 (whose optimizer compile wraps), it recompiles."""
    try:
        from keras.src.saving.serialization_lib import SerializableDict
        from keras.src.utils.tracking import DotNotTrackScope
        compiled = model._compile_config.config
    except (ImportError, AttributeError):
        compiled = None
    if compiled is None or execution.mixed_precision == "fp16":
        compile_model(model, config, execution)
        return
    optimizer = make_optimizer(config.optimizer, config.lr)
    with DotNotTrackScope():
        model.optimizer = optimizer
        model._compile_config = SerializableDict(**{**compiled, "optimizer": optimizer})
        model.train_function = None
        model.stop_training = False


BEST_WEIGHTS = "best.weights.npz"  # the best epoch's model.get_weights(), in that order (np.savez: arr_0, ...)
LEGACY_BEST_WEIGHTS = "best.weights.h5"  # what checkpoints held before (model.save_weights): still resumed


class Checkpointer(keras.callbacks.Callback):
    """Early stopping on val_loss + checkpoints (model with optimizer state, best weights, state).

    The best weights are kept in memory (a copy costs ~1 ms; an .h5 file per improving epoch cost ~0.25 s, a
    third of a digits epoch) and restored by early stopping; the checkpoint is uploaded
    into the run when `every` seconds of work have passed since the last one (every epoch when `every` is 0),
    so a short training pays nothing for protection it does not need. The whole state lives in the
    checkpoint, so `--resume` continues exactly where it was taken (or replays from the start, bit for bit).
    """

    def __init__(self, folder: Path, patience: int, state: dict, every: float = 0.0):
        super().__init__()
        self.folder, self.patience, self.state, self.every = folder, patience, state, every
        self.last_upload, self.best_changed = time.monotonic(), False
        self.best: list | None = None  # the best epoch's weights, when this process trained it

    def on_epoch_end(self, epoch, logs=None):
        val_loss = float(logs["val_loss"])
        if not np.isfinite(float(logs["loss"])):  # the epoch's mean loss is non-finite iff a batch's was
            self.state["nonfinite_loss_epoch"] = epoch + 1
            self.model.stop_training = True
        if val_loss < self.state["best_val_loss"]:
            self.state.update(best_val_loss=val_loss, best_epoch=epoch + 1, wait=0)
            self.best = [np.array(w) for w in self.model.get_weights()]  # copies: training goes on
            self.best_changed = True
        else:
            self.state["wait"] += 1
        self.state["epoch"] = epoch + 1
        if self.patience and self.state["wait"] >= self.patience:
            self.model.stop_training = True
        if time.monotonic() - self.last_upload >= self.every:
            self.upload()

    def upload(self) -> None:
        changed = [self.folder / "last.keras", self.folder / "state.json"]
        self.model.save(changed[0])
        changed[1].write_text(json.dumps(self.state))
        if self.best_changed:
            np.savez(self.folder / BEST_WEIGHTS, *self.best)
            changed.append(self.folder / BEST_WEIGHTS)
        tracking.log_checkpoint(changed)
        self.last_upload, self.best_changed = time.monotonic(), False

    @staticmethod
    def finished(state: dict, config: "TrainConfig") -> bool:
        """Nothing left to train: all epochs done, early stopping triggered, or the loss went non-finite."""
        return (state["epoch"] >= config.epochs or bool(config.patience and state["wait"] >= config.patience)
                or bool(state.get("nonfinite_loss_epoch")))


class EpochLog(keras.callbacks.Callback):
    """One line per epoch on stdout, then ONE write to MLflow per epoch (its `writer`, a callback placed after
    the per-epoch measurements): the epoch's metrics, the measurements add()ed meanwhile, and a heartbeat. The
    line's time is the epoch's training and validation only. Epochs up to `logged_through` were logged before an
    interruption: a resume replays them bit for bit, so they are not logged twice (the write is the beat only)."""

    def __init__(self, epochs: int, run_id: str, logged_through: int = 0):
        super().__init__()
        self.epochs, self.run_id, self.logged_through = epochs, run_id, logged_through
        self.pending: dict = {}  # the current epoch's metrics, written (and emptied) by `writer`
        self.writer = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.write(epoch))

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: float(logs[k]) for k in tracking.EPOCH_METRICS}
        self.pending.update(metrics)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        print(f"epoch {epoch + 1}/{self.epochs}  {shown}  ({time.perf_counter() - self.start:.1f}s)", flush=True)

    def add(self, metrics: dict) -> None:
        """Adds the current epoch's `metrics` to its write."""
        self.pending.update(metrics)

    def write(self, epoch: int) -> None:
        # one store write per epoch: 7.8-8.6 ms against 12.0-13.5 ms for two (sqlite store, AVX2 machine)
        tracking.beat(self.run_id, self.pending if epoch + 1 > self.logged_through else None, step=epoch + 1)
        self.pending = {}


def grad_noise_callback(config: TrainConfig, execution: Execution, ds: data.Dataset, state: dict,
                        epoch_log: EpochLog) -> list:
    """[the per-epoch gradient-noise measurement (eq. 1-3)] or [] when it is off. Each epoch's estimate goes
    into the epoch's MLflow write (`epoch_log`: not again for an epoch replayed after a resume) and into the
    checkpoint state, so the mean over training survives a resume."""
    if not execution.grad_noise_batches:
        return []

    def log(estimate: dict, step: int) -> None:
        state.setdefault("grad_noise", []).append(estimate)
        epoch_log.add(tracking.grad_noise_metrics(estimate))

    return [gradnoise.GradNoiseCallback(ds.x_train, ds.y_train, config.batch_size, execution.grad_noise_batches,
                                        config.seed, config.lr, log)]


def grad_noise_summary(model, config: TrainConfig, execution: Execution, ds: data.Dataset, state: dict,
                       gradients=None) -> dict:
    """The gradient-noise metrics to log at the end: the estimate on the weights the run registers (after any
    best-weights restore: `_final`) and the mean over the epochs of training (`_mean`); {} when it is off.
    `gradients`: the callback's compiled stacked-gradient function."""
    if not execution.grad_noise_batches:
        return {}
    final = gradnoise.estimate(model, ds.x_train, ds.y_train, config.batch_size, execution.grad_noise_batches,
                               config.seed, config.epochs + 1, config.lr, optimizer=model.optimizer,
                               gradients=gradients)
    history = state.get("grad_noise", [])
    mean = {k: float(np.mean([h[k] for h in history if k in h])) for k in (history[0] if history else {})}
    return {**tracking.grad_noise_metrics(final, tracking.FINAL_SUFFIX),
            **tracking.grad_noise_metrics(mean, tracking.MEAN_SUFFIX)}


def saved_weights(path: Path) -> list | None:
    """The weights list a Checkpointer saved (np.savez order), or None when there is no such file."""
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _restore(previous: Path | None, folder: Path) -> tuple[keras.Model | None, dict]:
    """(model with optimizer state, early-stopping state) from a downloaded checkpoint, or (None, fresh)."""
    fresh = {"epoch": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0}
    if previous is None or not (previous / "state.json").is_file():
        return None, fresh
    model = keras.models.load_model(previous / "last.keras")
    if (previous / BEST_WEIGHTS).is_file():
        (folder / BEST_WEIGHTS).write_bytes((previous / BEST_WEIGHTS).read_bytes())
    elif (previous / LEGACY_BEST_WEIGHTS).is_file():  # a checkpoint of an earlier lrnoise: convert it once
        last = model.get_weights()
        model.load_weights(previous / LEGACY_BEST_WEIGHTS)
        np.savez(folder / BEST_WEIGHTS, *model.get_weights())
        model.set_weights(last)
    return model, json.loads((previous / "state.json").read_text())


def resume_config(run_id: str) -> TrainConfig:
    run = tracking.get_run(run_id)
    if run.info.status == "FINISHED":
        raise LrnoiseError(f"run {run_id} already finished: nothing to resume")
    if run.data.tags.get(tracking.KIND) != "train":
        raise LrnoiseError(f"run {run_id} is not a training run of lrnoise")
    return TrainConfig.from_params(run.data.params)


def train(config: TrainConfig, data_dir: str | None = None, experiment: str = tracking.DEFAULT_EXPERIMENT,
          registered_model: str | None = None, resume: str | None = None, parent_run_id: str | None = None,
          extra_callbacks: tuple = (), execution: Execution = Execution(),
          dataset: data.Dataset | None = None) -> TrainResult:
    """Trains `config` in a new MLflow run (or continues run `resume` from its last checkpoint).

    `dataset` replaces data.load (benchmarks train on synthetic CIFAR-shaped data this way).
    """
    config.validate()
    execution.validate()
    registered_model = registered_model or f"lrnoise-{config.dataset}-{config.model}"
    cache_save_skipsets()  # this run saves its model (checkpoints, the logged model)
    trim_graph_rewrites()  # before the process's first training traces anything
    prepared = _take_prepared((config, execution, data_dir))
    if resume or dataset:  # a resumed run continues its checkpoint; given data is not the prepared data
        prepared = None
    ds = prepared.dataset if prepared else dataset or load_data(config, data_dir)
    with tracking.run(experiment, "train", run_id=resume, parent_run_id=parent_run_id,
                      run_name=f"{config.dataset}-{config.model}-{config.optimizer}-lr{config.lr:g}-s{config.seed}"), \
            tracking.temp_dir() as tmp:
        run_id = tracking.active_run_id()
        tracking.log_params(config.params(), execution=asdict(execution))
        if not prepared:  # prepare() seeded before it initialised the model
            seed_everything(config.seed)
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        previous = tracking.download_checkpoint(run_id, Path(tmp) / "prev") if resume else None
        model, state = _restore(previous, folder)
        if prepared:  # initialised and built by prepare()
            model = prepared.model
        else:
            if model is None:
                model = reusable_model(config, ds, execution)
            else:  # keep the restored optimizer state; apply this call's execution options
                compile_model(model, config, execution, optimizer=model.optimizer)
            build_state(model, ds)
        if state["epoch"]:
            print(f"resuming run {run_id} after epoch {state['epoch']}", flush=True)

        grad_noise, checkpointer = [], Checkpointer(folder, config.patience, state, execution.checkpoint_every)
        if not Checkpointer.finished(state, config):
            stream, steps = prepared.stream if prepared else training_stream(config, ds, state["epoch"])
            logged_through = tracking.last_step(run_id, tracking.EPOCH_METRICS[0]) if resume else 0
            epoch_log = EpochLog(config.epochs, run_id, logged_through)
            grad_noise = grad_noise_callback(config, execution, ds, state, epoch_log)
            model.fit(stream, steps_per_epoch=steps, epochs=config.epochs, initial_epoch=state["epoch"], verbose=0,
                      validation_data=data.validation_data(ds.x_val, ds.y_val, EVAL_BATCH),
                      callbacks=[epoch_log, *grad_noise, epoch_log.writer, checkpointer,
                                 *extra_callbacks])
        if state.get("nonfinite_loss_epoch"):
            print(f"stopped: the training loss became non-finite in epoch {state['nonfinite_loss_epoch']}",
                  flush=True)
            tracking.log_metrics({tracking.NONFINITE_LOSS_EPOCH: state["nonfinite_loss_epoch"]})
        best = checkpointer.best if checkpointer.best is not None else saved_weights(folder / BEST_WEIGHTS)
        if state["best_epoch"] and best is not None:
            model.set_weights(best)  # early stopping's "restore best weights"

        summary = grad_noise_summary(model, config, execution, ds, state,
                                     gradients=grad_noise[0].gradients if grad_noise else None)
        evaluator = models.Evaluator(model, ds.x_test, ds.y_test, EVAL_BATCH)
        baseline = evaluator()
        learned = stats.above_chance(baseline, len(ds.y_test), ds.num_classes)
        tracking.log_metrics({**summary, tracking.BASELINE_ACCURACY: baseline,
                              tracking.EPOCHS_TRAINED: state["epoch"], tracking.BEST_EPOCH: state["best_epoch"]})
        model_uri, version = tracking.log_model(model, ds.x_test[:4].astype(np.float32), registered_model,
                                                config.params(), run_id, learned=learned)
        print(f"baseline_accuracy {baseline:.4f}  model {model_uri}  registered {registered_model} v{version}")
        if not learned:
            print(f"did not learn: test accuracy {baseline:.2%} is not clearly above chance "
                  f"({1 / ds.num_classes:.0%}); tagged {tracking.LEARNED}=false (lr {config.lr:g} too high?)")
        print(f"run_id {run_id}", flush=True)
    return TrainResult(run_id, model_uri, str(version), baseline, state["epoch"], model, ds, evaluator)
