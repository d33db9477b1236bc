"""What lrnoise writes into its runs: params (checked against what a resumed run holds), metrics, the data as
dataset inputs, artifacts and checkpoints, a noise evaluation's result, the report run, and a run's end marks."""

from __future__ import annotations

import hashlib
import os
import shlex
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from lrnoise import names
from lrnoise.errors import LrnoiseError
from lrnoise.store import session


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


def temp_dir():
    return tempfile.TemporaryDirectory(prefix="lrnoise-")


def _new_params(existing: dict, params: dict, run_id: str, strict: bool = True) -> dict:
    """The params not yet among the run's `existing` ones, canonically written. With `strict`, one already
    there must hold the same value, perhaps spelled another way by `mlflow run` ('1e-3' vs '0.001'), else it is
    an error; without, what is there stays (a study's entry point pre-logs '' for every override it was not
    given)."""
    fresh = {}
    for key, value in params.items():
        text = names.canonical(value)
        if key not in existing:
            fresh[key] = text
        elif strict and not same_value(existing[key], text):
            raise LrnoiseError(f"param {key} is already {existing[key]!r} on run {run_id}, cannot log {text!r}")
    return fresh


def log_params(params: dict, key: str | None = None, execution: dict | None = None) -> None:
    """Logs a configuration's params on the active run and tags it with its configuration key (`key`, or the
    hash of the params), in one write after one read. `execution`: how the run was executed (mixed precision,
    XLA, steps per execution, ...), params outside the key, checked the same way (a resume must run as the run
    ran)."""
    write_params(active_run_id(), {**params, **(execution or {})}, {names.CONFIG_KEY: key or names.config_key(params)})


def write_params(run_id: str, params: dict, tags: dict, strict: bool = True) -> None:
    """One read of the run's params, then one write: the params not yet there (_new_params) and `tags`."""
    fresh = _new_params(session.client().get_run(run_id).data.params, params, run_id, strict)
    session.client().log_batch(
        run_id,
        params=[mlflow.entities.Param(k, v) for k, v in fresh.items()],
        tags=[mlflow.entities.RunTag(k, v) for k, v in tags.items()],
    )


def unquote(text: str) -> str:
    try:
        parts = shlex.split(text)
    except ValueError:
        return text
    return parts[0] if len(parts) == 1 else text


def same_value(a: str, b: str) -> bool:
    """'1e-3' == '0.001' and "'0.1, 0.2'" == '0.1,0.2': the same value written another way
    (`mlflow run` logs an entry-point parameter as given, shell-quoted when it holds spaces)."""
    a, b = unquote(a), unquote(b)
    left, right = a.split(","), b.split(",")
    if len(left) != len(right):
        return False
    for x, y in zip(left, right):
        try:
            if float(x) != float(y):
                return False
        except ValueError:
            if x.strip() != y.strip():
                return False
    return True


def mark_resumed(epoch: int) -> None:
    """Tags the active training run as continued from its checkpoint after `epoch` (the latest resume)."""
    mlflow.set_tag(names.RESUMED_AFTER_EPOCH, str(epoch))


def mark_failed(run_id: str) -> None:
    session.client().set_terminated(run_id, "FAILED")


def last_step(run_id: str, metric: str) -> int:
    """The highest step of `metric` already logged on the run (0 if none): a resumed training run does not
    log an epoch twice."""
    history = session.client().get_metric_history(run_id, metric)
    return max((m.step for m in history), default=0)


def metric_entities(metrics: dict, step: int | None, when: float, model_id: str | None = None) -> list:
    """`metrics` as MLflow entities logged at `when` (unix time), for a log_batch write (linked to the logged model
    `model_id` when given: the Models view shows them)."""
    return [
        mlflow.entities.Metric(k, float(v), int(when * 1000), step or 0, model_id=model_id) for k, v in metrics.items()
    ]


def log_metrics(metrics: dict, step: int | None = None, run_id: str | None = None, model_id: str | None = None) -> None:
    """Metrics on the active run (or run `run_id`); with `model_id`, also on that logged model."""
    if run_id is None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, model_id=model_id)
    else:
        session.client().log_batch(run_id, metrics=metric_entities(metrics, step, time.time(), model_id))


def log_artifacts(folder: str) -> None:
    mlflow.log_artifacts(folder)


def dataset_digest(x: np.ndarray, y: np.ndarray) -> str:
    """A split's digest over every image and label (MLflow's own digest reads only the first 10,000 values)."""
    digest = hashlib.sha256(repr((x.shape, x.dtype.str, y.shape, y.dtype.str)).encode())
    for array in (x, y):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:16]


def log_datasets(name: str, source: str, splits: dict) -> None:
    """Logs the active run's data as MLflow dataset inputs (the runs table's Dataset column and its filter):
    `splits` {context: (images, labels)}, each under the dataset's `name`, its `source` and dataset_digest."""
    import warnings

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local path or name, as meant
        warnings.simplefilter("ignore", UserWarning)
        datasets = [
            mlflow.data.from_numpy(x, targets=y, source=source or "unknown", name=name, digest=dataset_digest(x, y))
            for x, y in splits.values()
        ]
    for attempt in (1, 2):
        try:
            mlflow.log_inputs(datasets=datasets, contexts=list(splits), tags_list=[None] * len(datasets))
            return
        except MlflowException as exc:  # two workers creating the same dataset at once: the store's
            if attempt == 2 or not is_duplicate(exc):  # get-or-create is not atomic, so the loser's
                raise  # transaction is rolled back; again, the dataset exists and is reused
            time.sleep(0.2)


# How the stores MLflow runs on word a unique-key collision: sqlite, PostgreSQL, MySQL
DUPLICATE_KEY_MESSAGES = (
    "UNIQUE constraint failed",
    "duplicate key value violates unique constraint",
    "Duplicate entry",
)


def is_duplicate(exc: BaseException) -> bool:
    """True when `exc` is the store refusing a row whose unique key exists (two writers' get-or-create)."""
    return any(message in str(exc) for message in DUPLICATE_KEY_MESSAGES)


def log_noise_result(
    run_metrics: dict,
    per_level: list[tuple[str, str, dict]],
    summary_columns: tuple,
    train_run_id: str | None,
    prefix: str,
    train_model_id: str | None = None,
) -> None:
    """A noise evaluation's metrics on the active noise-eval run, its summary also onto the training run.

    run_metrics: {name: value} of run-level metrics (names from lrnoise.names); per_level: (level_name, label,
    {column: value}) per level; summary_columns: the per-level columns copied onto the training run, together
    with A_avr, under `prefix` (see names.summary_prefix), so that its runs table shows every configuration, and its
    logged model `train_model_id` (MLflow's Models view ranks models by them)."""
    metrics = dict(run_metrics)
    summary = {prefix + names.AVG_NORMALIZED_ACCURACY: run_metrics[names.AVG_NORMALIZED_ACCURACY]}
    for level_name, label, values in per_level:
        for column, value in values.items():
            metrics[names.level_metric(column, level_name, label)] = value
            if column in summary_columns:
                summary[prefix + names.level_metric(column, level_name, label)] = value
    log_metrics(metrics)
    if train_run_id:
        log_metrics(summary, run_id=train_run_id, model_id=train_model_id)


def log_checkpoint(files: list[Path]) -> None:
    """Uploads the checkpoint files that changed this epoch into the run's checkpoint folder."""
    for file in files:
        mlflow.log_artifact(str(file), artifact_path=names.CHECKPOINT_DIR)


def download_checkpoint(run_id: str, dst: Path) -> Path | None:
    """The run's checkpoint folder downloaded into dst, or None if the run has none."""
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=names.CHECKPOINT_DIR, dst_path=str(dst))
    except (MlflowException, OSError):
        return None
    return Path(path)


def entry_point_elsewhere(experiment_id: str) -> str | None:
    """Under `mlflow run` with the entry point's run in another experiment than `experiment_id` (no
    --experiment-name: Default): that run's id, and MLFLOW_RUN_ID consumed (as start_run would consume it), so the
    command's run is made in `experiment_id`, where the report looks; tag the entry point's run with it after.
    Else None (outside `mlflow run`, or its run is in `experiment_id`: that run is the command's)."""
    entry = os.environ.get("MLFLOW_RUN_ID")
    if entry is None or session.get_run(entry).info.experiment_id == experiment_id:
        return None
    del os.environ["MLFLOW_RUN_ID"]
    return entry


def log_report(experiment_id: str, folder: Path) -> str:
    """A `report` run in the reported experiment holding every table and figure as artifacts. Under `mlflow run`
    the entry point's run is that run when it is in the reported experiment; when `mlflow run` put it in another
    one (no --experiment-name: Default), the report run is made in the reported experiment all the same and the
    entry point's run is tagged with its id (names.REPORT_RUN_ID)."""
    elsewhere = entry_point_elsewhere(experiment_id)
    with mlflow.start_run(experiment_id=experiment_id, run_name="report", tags={names.KIND: "report"}) as active:
        mlflow.log_artifacts(str(folder))
    if elsewhere:
        session.client().set_tag(elsewhere, names.REPORT_RUN_ID, active.info.run_id)
    return active.info.run_id
