"""Training one model: constant learning rate (the variable under study), early stopping on validation loss
with the best weights restored ("until convergence"), a checkpoint every `checkpoint_every` seconds of work,
all tracked in MLflow. train() reads top to bottom: data, run, starting model, fit, best weights, evaluation,
logged model.

How a configuration becomes a compiled model is build.py's; a sweep trains many configurations in one process,
and `sweep` (a build.SweepCache) lets a configuration start from a model already traced for its architecture.
Without one, every model is built afresh; both give the same weights (tests/test_build.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from lrnoise import names
from lrnoise.config import Execution, TrainConfig
from lrnoise.data import loading, pipelines
from lrnoise.noise import scoring, statistics
from lrnoise.store import leases, registry, run_logging
from lrnoise.training import fastpath, gradnoise, noise_training
from lrnoise.training.build import (
    Prepared,
    SweepCache,
    build_model,
    build_state,
    compile_model,
    load_data,
    seed_everything,
    steps_per_training_epoch,
    training_stream,
)

EVAL_BATCH = 1000  # batch size for clean test accuracy


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    model_version: str
    baseline_accuracy: float
    epochs_trained: int
    model: keras.Model | None = field(default=None, repr=False, compare=False)  # the trained model, in memory
    dataset: loading.Dataset | None = field(default=None, repr=False, compare=False)  # and its data (no reload)
    evaluator: scoring.Evaluator | None = field(default=None, repr=False, compare=False)  # a_0's, on the test set


# ---------------------------------------------------------------- checkpoints, per-epoch logging, gradient noise
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
        run_logging.log_checkpoint(changed)
        self.last_upload, self.best_changed = time.monotonic(), False

    @staticmethod
    def finished(state: dict, config: TrainConfig) -> bool:
        """Nothing left to train: all epochs done, early stopping triggered, or the loss went non-finite."""
        return (
            state["epoch"] >= config.epochs
            or bool(config.patience and state["wait"] >= config.patience)
            or bool(state.get("nonfinite_loss_epoch"))
        )


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
        metrics = {k: float(logs[k]) for k in names.EPOCH_METRICS}
        self.pending.update(metrics)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        print(f"epoch {epoch + 1}/{self.epochs}  {shown}  ({time.perf_counter() - self.start:.1f}s)", flush=True)

    def add(self, metrics: dict) -> None:
        """Adds the current epoch's `metrics` to its write."""
        self.pending.update(metrics)

    def write(self, epoch: int) -> None:
        # one store write per epoch: 7.8-8.6 ms against 12.0-13.5 ms for two (sqlite store, 2-core x86-64 CPU with AVX2)
        leases.beat(self.run_id, self.pending if epoch + 1 > self.logged_through else None, step=epoch + 1)
        self.pending = {}


def grad_noise_callback(
    config: TrainConfig, execution: Execution, ds: loading.Dataset, state: dict, epoch_log: EpochLog
) -> list:
    """[the per-epoch gradient-noise measurement (eq. 1-3)] or [] when it is off. Each epoch's estimate goes
    into the epoch's MLflow write (`epoch_log`: not again for an epoch replayed after a resume) and into the
    checkpoint state, so the mean over training survives a resume."""
    if not execution.grad_noise_batches:
        return []

    def log(estimate: dict, step: int) -> None:
        state.setdefault("grad_noise", []).append(estimate)
        epoch_log.add(names.grad_noise_metrics(estimate))

    return [
        gradnoise.GradNoiseCallback(
            ds.x_train, ds.y_train, config.batch_size, execution.grad_noise_batches, config.seed, config.lr, log
        )
    ]


def grad_noise_summary(
    model, config: TrainConfig, execution: Execution, ds: loading.Dataset, state: dict, gradients=None
) -> dict:
    """The gradient-noise metrics to log at the end: the estimate on the weights the run registers (after any
    best-weights restore: `_final`) and the mean over the epochs of training (`_mean`); {} when it is off.
    `gradients`: the callback's compiled stacked-gradient function."""
    if not execution.grad_noise_batches:
        return {}
    final = gradnoise.estimate(
        model,
        ds.x_train,
        ds.y_train,
        config.batch_size,
        execution.grad_noise_batches,
        config.seed,
        config.epochs + 1,
        config.lr,
        optimizer=model.optimizer,
        gradients=gradients,
    )
    history = state.get("grad_noise", [])
    mean = {k: float(np.mean([h[k] for h in history if k in h])) for k in (history[0] if history else {})}
    return {
        **names.grad_noise_metrics(final, names.FINAL_SUFFIX),
        **names.grad_noise_metrics(mean, names.MEAN_SUFFIX),
    }


def saved_weights(path: Path) -> list | None:
    """The weights list a Checkpointer saved (np.savez order), or None when there is no such file."""
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def fresh_state() -> dict:
    """Early stopping's state before the first epoch (the checkpoint's state.json)."""
    return {"epoch": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0}


def restore(previous: Path | None, folder: Path) -> tuple[keras.Model | None, dict]:
    """(model with optimizer state, early-stopping state) from a downloaded checkpoint, or (None, fresh)."""
    if previous is None or not (previous / "state.json").is_file():
        return None, fresh_state()
    model = keras.models.load_model(previous / "last.keras")
    if (previous / BEST_WEIGHTS).is_file():
        (folder / BEST_WEIGHTS).write_bytes((previous / BEST_WEIGHTS).read_bytes())
    elif (previous / LEGACY_BEST_WEIGHTS).is_file():  # a checkpoint of an earlier lrnoise: convert it once
        last = model.get_weights()
        model.load_weights(previous / LEGACY_BEST_WEIGHTS)
        np.savez(folder / BEST_WEIGHTS, *model.get_weights())
        model.set_weights(last)
    return model, json.loads((previous / "state.json").read_text())


# ---------------------------------------------------------------- one training run, top to bottom
def train(
    config: TrainConfig,
    data_dir: str | None = None,
    experiment: str = names.DEFAULT_EXPERIMENT,
    registered_model: str | None = None,
    resume: str | None = None,
    parent_run_id: str | None = None,
    extra_callbacks: tuple = (),
    execution: Execution = Execution(),
    dataset: loading.Dataset | None = None,
    sweep: SweepCache | None = None,
) -> TrainResult:
    """Trains `config` in a new MLflow run (or continues run `resume` from its last checkpoint).

    `dataset` replaces loading.load (benchmarks train on synthetic CIFAR-shaped data this way). `sweep`: the
    process's models kept between configurations, and what it prepared for this one (build.SweepCache).
    """
    config.validate()
    execution.validate()
    registered_model = registered_model or names.registered_model(config.dataset, config.model)
    fastpath.cache_save_skipsets()  # this run saves its model (checkpoints, the logged model)
    prepared = sweep.take_prepared(config, execution, data_dir) if sweep else None  # taken (or dropped) once
    if resume or dataset:  # a resumed run continues its checkpoint; given data is not the prepared data
        prepared = None
    ds = prepared.dataset if prepared else dataset or load_data(config, data_dir)

    with (
        leases.run(experiment, "train", run_id=resume, parent_run_id=parent_run_id, run_name=config.run_name),
        run_logging.temp_dir() as tmp,
    ):
        run_id = run_logging.active_run_id()
        run_logging.log_params(config.params(), execution=execution.params())
        run_logging.log_datasets(
            ds.name,
            ds.source,
            {names.TRAIN_SPLIT: (ds.x_train, ds.y_train), names.TEST_SPLIT: (ds.x_test, ds.y_test)},
        )
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        model, state = _starting_point(config, execution, ds, folder, resume, prepared, sweep)
        noise_training.configure(model, config.train_noise, config.seed)  # 0: the model's own clean step
        checkpointer = Checkpointer(folder, config.patience, state, execution.checkpoint_every)

        grad_noise = []  # the per-epoch gradient-noise callback, when on: its traced function serves the summary
        if not Checkpointer.finished(state, config):
            stream, steps = prepared.stream if prepared else training_stream(config, ds, state["epoch"])
            epoch_log = EpochLog(
                config.epochs, run_id, run_logging.last_step(run_id, names.EPOCH_METRICS[0]) if resume else 0
            )
            grad_noise = grad_noise_callback(config, execution, ds, state, epoch_log)
            model.fit(
                stream,
                steps_per_epoch=steps,
                epochs=config.epochs,
                initial_epoch=state["epoch"],
                verbose=0,
                validation_data=pipelines.validation_data(ds.x_val, ds.y_val, EVAL_BATCH),
                callbacks=[epoch_log, *grad_noise, epoch_log.writer, checkpointer, *extra_callbacks],
            )
        if state.get("nonfinite_loss_epoch"):
            print(f"stopped: the training loss became non-finite in epoch {state['nonfinite_loss_epoch']}", flush=True)
            run_logging.log_metrics({names.NONFINITE_LOSS_EPOCH: state["nonfinite_loss_epoch"]})
        evaluated_epoch = state["epoch"]  # the epoch whose weights are evaluated and logged
        if config.budget == "epochs":  # under steps every model is evaluated after its full budget of updates
            best = checkpointer.best if checkpointer.best is not None else saved_weights(folder / BEST_WEIGHTS)
            if state["best_epoch"] and best is not None:
                model.set_weights(best)  # early stopping's "restore best weights"
                evaluated_epoch = state["best_epoch"]

        summary = grad_noise_summary(
            model, config, execution, ds, state, gradients=grad_noise[0].gradients if grad_noise else None
        )
        bn_at_noisy = {}
        if config.train_noise:  # its BN statistics were gathered at noisy weights: a_0 is measured at clean ones
            bn_at_noisy[names.BASELINE_ACCURACY_NOISY_BN] = scoring.Evaluator(model, ds.x_test, ds.y_test, EVAL_BATCH)()
            noise_training.recompute_batch_norm(model, ds.x_train)
        evaluator = scoring.Evaluator(model, ds.x_test, ds.y_test, EVAL_BATCH)
        baseline = evaluator()
        learned = statistics.above_chance(baseline, len(ds.y_test), ds.num_classes)
        model_uri, version = registry.log_model(
            model, ds.x_test[:4].astype(np.float32), registered_model, config, run_id, learned=learned
        )
        run_logging.log_metrics(  # on the run and on its logged model (MLflow's Models view ranks by a_0)
            {
                **summary,
                **bn_at_noisy,
                names.BASELINE_ACCURACY: baseline,
                names.EPOCHS_TRAINED: state["epoch"],
                names.OPTIMIZER_STEPS: evaluated_epoch * steps_per_training_epoch(config, len(ds.x_train)),
                names.BEST_EPOCH: state["best_epoch"],
            },
            model_id=registry.logged_model_id(model_uri),
        )
        print(f"baseline_accuracy {baseline:.4f}  model {model_uri}  registered {registered_model} v{version}")
        if not learned:
            print(
                f"did not learn: test accuracy {baseline:.2%} is not clearly above chance "
                f"({1 / ds.num_classes:.0%}); tagged {names.LEARNED}=false (lr {config.lr:g} too high?)"
            )
        print(f"run_id {run_id}", flush=True)
    return TrainResult(run_id, model_uri, str(version), baseline, state["epoch"], model, ds, evaluator)


def _starting_point(
    config: TrainConfig,
    execution: Execution,
    ds: loading.Dataset,
    folder: Path,
    resume: str | None,
    prepared: Prepared | None,
    sweep: SweepCache | None,
) -> tuple:
    """(the model fit starts from, its early-stopping state): a resumed run's last checkpoint (its optimizer
    state kept, this call's execution options applied), else the model prepare() made, else a freshly
    initialised one (the sweep's traced model of the architecture when it has one)."""
    if prepared:  # seeded, initialised and built by SweepCache.prepare()
        return prepared.model, fresh_state()
    seed_everything(config.seed)
    model, state = restore(
        run_logging.download_checkpoint(run_logging.active_run_id(), folder.parent / "prev") if resume else None, folder
    )
    if model is not None:
        print(f"resuming run {run_logging.active_run_id()} after epoch {state['epoch']}", flush=True)
        run_logging.mark_resumed(state["epoch"])
        compile_model(model, config, execution, optimizer=model.optimizer)
    else:
        model = sweep.model_for(config, ds, execution) if sweep else build_model(config, ds, execution)
    build_state(model, ds)
    return model, state
