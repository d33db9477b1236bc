"""Every MLflow call, and every param / metric / tag name, lives here and nowhere else.

Runs: a `train` run per trained model (params, per-epoch metrics, the model, checkpoints); a `noise_eval`
run per noise evaluation, child of its training run; a `report` run; a `study` run parenting the grid.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import tempfile
import time
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lrnoise.errors import LrnoiseError

DEFAULT_EXPERIMENT = "lrnoise"

# ---- names: params
TRAIN_PARAMS = ("dataset", "model", "optimizer", "lr", "batch_size", "epochs", "seed", "init", "shortcut",
                "patience")
NOISE_PARAMS = ("etas", "trials", "seed", "targets", "noise")
NOISE_AUTO_PARAMS = ("ci_target", "max_trials")  # logged with trials = auto
VERSION_TAGS = ("lr", "optimizer", "dataset", "model", "seed")  # registry version tags, from the train params
# ---- names: metrics
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
BASELINE_ACCURACY = "baseline_accuracy"  # a_0: clean test accuracy
EPOCHS_TRAINED = "epochs_trained"
BEST_EPOCH = "best_epoch"  # the epoch whose weights were kept (early stopping restores them)
AVG_NORMALIZED_ACCURACY = "avg_normalized_accuracy"  # A_avr, eq. 9
# ---- names: tags
KIND = "lrnoise.kind"  # train | noise_eval | report | study
SOURCE_RUN_ID = "source_run_id"  # on a noise-eval run: the training run it evaluated
PARENT_RUN_ID = "mlflow.parentRunId"
MODEL_URI = "lrnoise.model_uri"  # on a training run: models:/<model_id> of the model it logged
EVALUATED_MODEL = "lrnoise.evaluated_model"  # on a noise-eval run: the model URI it evaluated
CONFIG_KEY = "lrnoise.config"  # hash of the configuration's canonical params, for identical-run lookups
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
MODEL_ARTIFACT = "model"
CHECKPOINT_DIR = "checkpoint"


def eta_pct(eta: float) -> str:
    """eta as the percent used in metric names: 0.1 -> '10', 0.025 -> '2.5', 0.01 -> '1'."""
    return f"{round(eta * 100, 6):g}"


def accuracy_eta(eta): return f"accuracy_eta_{eta_pct(eta)}"  # a^eta, eq. 7
def accuracy_std_eta(eta): return f"accuracy_std_eta_{eta_pct(eta)}"
def accuracy_ci95_eta(eta): return f"accuracy_ci95_eta_{eta_pct(eta)}"
NORMALIZED_ACCURACY_ETA = "normalized_accuracy_eta_"


def normalized_accuracy_eta(eta): return f"{NORMALIZED_ACCURACY_ETA}{eta_pct(eta)}"  # A^eta, eq. 8
def normalized_accuracy_ci95_eta(eta): return f"normalized_accuracy_ci95_eta_{eta_pct(eta)}"
def trials_eta(eta): return f"trials_eta_{eta_pct(eta)}"  # draws made at this eta


def canonical(value) -> str:
    """How a param value is written: floats in repr form (0.00075 -> '0.00075'), lists comma-joined."""
    if isinstance(value, (list, tuple)):
        return ",".join(canonical(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def config_key(params: dict) -> str:
    """Hash of the canonical params: runs with equal keys ran the same configuration."""
    text = json.dumps({k: canonical(v) for k, v in sorted(params.items())}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


# ---------------------------------------------------------------- stores and experiments
def client() -> MlflowClient:
    return MlflowClient()


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def set_tracking_uri(uri: str) -> None:
    mlflow.set_tracking_uri(uri)


def ensure_experiment(name: str) -> str:
    """Id of experiment `name`, created (and tagged for the runs-table UI) if missing."""
    c = client()
    try:
        exp = c.get_experiment_by_name(name)
    except MlflowException as exc:
        raise LrnoiseError(f"tracking server {tracking_uri()} unreachable or refused: {exc.message}") from None
    if exp is None:
        exp_id = c.create_experiment(name)
    else:
        exp_id = exp.experiment_id
    c.set_experiment_tag(exp_id, *EXPERIMENT_KIND)
    return exp_id


def find_experiment(name: str):
    """The experiment called `name`, or a one-line error if there is none (or the server is unreachable)."""
    try:
        exp = client().get_experiment_by_name(name)
    except MlflowException as exc:
        raise LrnoiseError(f"tracking server {tracking_uri()} unreachable or refused: {exc.message}") from None
    except Exception as exc:  # connection errors surface as requests exceptions
        raise LrnoiseError(f"tracking server {tracking_uri()} unreachable: {type(exc).__name__}") from None
    if exp is None:
        raise LrnoiseError(f"no experiment named {name!r} in {tracking_uri()}")
    return exp


def get_run(run_id: str):
    try:
        return client().get_run(run_id)
    except MlflowException:
        raise LrnoiseError(f"no run {run_id!r} in {tracking_uri()}") from None


# ---------------------------------------------------------------- runs
@contextlib.contextmanager
def run(experiment: str, kind: str, run_id: str | None = None, parent_run_id: str | None = None,
        tags: dict | None = None, run_name: str | None = None):
    """Starts (or resumes) a run and always ends it: FINISHED, FAILED on error, KILLED on Ctrl-C.

    Inside `mlflow run` the entry point's run (MLFLOW_RUN_ID) is resumed, so there is no second run.
    """
    run_id = run_id or os.environ.pop("MLFLOW_RUN_ID", None)
    all_tags = {KIND: kind, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_RUN_ID] = parent_run_id
    if run_id:
        active = mlflow.start_run(run_id=run_id)
    else:
        active = mlflow.start_run(experiment_id=ensure_experiment(experiment), run_name=run_name)
    try:
        mlflow.set_tags(all_tags)
        yield active
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def _new_params(run_id: str, params: dict, strict: bool = True) -> dict:
    """The params not yet on the run, canonically written. With `strict`, one already there must hold the
    same value, perhaps spelled another way by `mlflow run` ('1e-3' vs '0.001'), else it is an error; without,
    what is there stays (a study's entry point pre-logs '' for every override it was not given)."""
    existing = client().get_run(run_id).data.params
    fresh = {}
    for key, value in params.items():
        text = canonical(value)
        if key not in existing:
            fresh[key] = text
        elif strict and not _same_value(existing[key], text):
            raise LrnoiseError(f"param {key} is already {existing[key]!r} on run {run_id}, cannot log {text!r}")
    return fresh


def log_params(params: dict) -> None:
    """Logs a configuration's params on the active run and tags it with their configuration key."""
    fresh = _new_params(active_run_id(), params)
    if fresh:
        mlflow.log_params(fresh)
    mlflow.set_tag(CONFIG_KEY, config_key(params))


def log_execution(options: dict) -> None:
    """How a run was executed (mixed precision, XLA, steps per execution): params outside the config key."""
    fresh = _new_params(active_run_id(), options)
    if fresh:
        mlflow.log_params(fresh)


def _unquote(text: str) -> str:
    try:
        parts = shlex.split(text)
    except ValueError:
        return text
    return parts[0] if len(parts) == 1 else text


def _same_value(a: str, b: str) -> bool:
    """'1e-3' == '0.001' and "'0.1, 0.2'" == '0.1,0.2': the same value written another way
    (`mlflow run` logs an entry-point parameter as given, shell-quoted when it holds spaces)."""
    a, b = _unquote(a), _unquote(b)
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


def log_metrics(metrics: dict, step: int | None = None, run_id: str | None = None) -> None:
    clean = {k: float(v) for k, v in metrics.items()}
    if run_id is None:
        mlflow.log_metrics(clean, step=step)
    else:
        client().log_batch(run_id, metrics=[
            mlflow.entities.Metric(k, v, int(time.time() * 1000), step or 0)
            for k, v in clean.items()])


def log_artifacts(folder: str) -> None:
    mlflow.log_artifacts(folder)


def experiment_name(experiment_id: str) -> str:
    return client().get_experiment(experiment_id).name


def log_noise_result(result, train_run_id: str | None) -> None:
    """Eq. 7-9 metrics on the active noise-eval run; the summary also onto the training run (runs table)."""
    metrics = {BASELINE_ACCURACY: result.baseline_accuracy, AVG_NORMALIZED_ACCURACY: result.avg_normalized_accuracy}
    summary = {AVG_NORMALIZED_ACCURACY: result.avg_normalized_accuracy}
    for row in result.summary.itertuples():
        metrics.update({accuracy_eta(row.eta): row.accuracy, accuracy_std_eta(row.eta): row.accuracy_std,
                        accuracy_ci95_eta(row.eta): row.accuracy_ci95,
                        normalized_accuracy_eta(row.eta): row.normalized_accuracy,
                        normalized_accuracy_ci95_eta(row.eta): row.normalized_accuracy_ci95,
                        trials_eta(row.eta): row.trials})
        summary[normalized_accuracy_eta(row.eta)] = row.normalized_accuracy
        summary[normalized_accuracy_ci95_eta(row.eta)] = row.normalized_accuracy_ci95
    log_metrics(metrics)
    if train_run_id:
        log_metrics(summary, run_id=train_run_id)


def dataset_of(train_run) -> str | None:
    """The dataset a training run trained on (its `dataset` param)."""
    return train_run.data.params.get(TRAIN_PARAMS[0])


def source_of(run_id: str | None = None, model_uri: str | None = None):
    """The lrnoise training run behind a run id or a model URI, or None for a model from elsewhere."""
    if run_id:
        run = get_run(run_id)
        if run.data.tags.get(KIND) != "train":
            raise LrnoiseError(f"run {run_id} is not an lrnoise training run (kind "
                               f"{run.data.tags.get(KIND, 'none')!r}): pass a training run id")
        if run.info.status != "FINISHED":
            raise LrnoiseError(f"training run {run_id} is {run.info.status}, not FINISHED: resume it first")
        return run
    if not str(model_uri).startswith(("models:/", "runs:/")):
        raise LrnoiseError(f"model URI {model_uri!r} must look like models:/<name>/<version>, "
                           "models:/<name>@<alias> or models:/<model_id>")
    try:
        source_id = mlflow.models.get_model_info(model_uri).run_id
    except MlflowException as exc:
        raise LrnoiseError(f"cannot find model {model_uri!r}: {exc.message.splitlines()[0]}") from None
    except OSError as exc:
        raise LrnoiseError(f"cannot find model {model_uri!r}: {exc}") from None
    if not source_id:
        return None
    run = get_run(source_id)
    return run if run.data.tags.get(KIND) == "train" else None


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


# ---------------------------------------------------------------- checkpoints
def log_checkpoint(files: list[Path]) -> None:
    """Uploads the checkpoint files that changed this epoch into the run's checkpoint folder."""
    for file in files:
        mlflow.log_artifact(str(file), artifact_path=CHECKPOINT_DIR)


def download_checkpoint(run_id: str, dst: Path) -> Path | None:
    """The run's checkpoint folder downloaded into dst, or None if the run has none."""
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CHECKPOINT_DIR, dst_path=str(dst))
    except (MlflowException, OSError):
        return None
    return Path(path)


# ---------------------------------------------------------------- models and the registry
def _pip_requirements() -> list[str]:
    """keras and the backend the model was trained with (tensorflow by default), pinned to what ran."""
    import keras
    reqs = []
    for package in ("keras", keras.backend.backend()):  # backend names are their package names
        try:
            reqs.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return reqs


def _patch_keras_input_example() -> None:
    """mlflow 3.17's mlflow.keras.save_model writes the input example before creating the model folder
    (FileNotFoundError .../model/input_example.json); create the folder first. Harmless once fixed upstream."""
    import mlflow.keras.save as keras_save
    original = keras_save._save_example
    if getattr(original, "_lrnoise", False):
        return

    def save_example(mlflow_model, input_example, path, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        return original(mlflow_model, input_example, path, *args, **kwargs)

    save_example._lrnoise = True
    keras_save._save_example = save_example


def log_model(model, input_example: np.ndarray, registered_model: str, train_params: dict, run_id: str):
    """Logs the Keras model (mlflow.keras flavor) and registers it, the version tagged with lr, optimizer,
    dataset, model, seed and the training run; returns (model_uri, model_version)."""
    version_tags = {**{k: train_params[k] for k in VERSION_TAGS}, SOURCE_RUN_ID: run_id}
    from mlflow.models import infer_signature
    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    _patch_keras_input_example()
    info = mlflow.keras.log_model(model, name=MODEL_ARTIFACT, signature=signature, input_example=input_example,
                                  pip_requirements=_pip_requirements(), registered_model_name=registered_model)
    version = info.registered_model_version
    mlflow.set_tag(MODEL_URI, info.model_uri)
    c = client()
    for key, value in version_tags.items():
        c.set_model_version_tag(registered_model, str(version), key, canonical(value))
    return info.model_uri, version


def load_model(model_uri: str):
    """A Keras model from `models:/<name>/<version>`, `models:/<name>@<alias>`, `models:/<model_id>`, `runs:/...`."""
    try:
        return mlflow.keras.load_model(model_uri)
    except MlflowException as exc:
        raise LrnoiseError(f"cannot load model {model_uri!r}: {exc.message.splitlines()[0]}") from None
    except OSError as exc:
        raise LrnoiseError(f"cannot load model {model_uri!r}: {exc}") from None


def model_uri_of_run(run_id: str) -> str:
    """`models:/<model_id>` of the model a training run logged, or an error if it logged none."""
    run = get_run(run_id)
    if MODEL_URI in run.data.tags:
        return run.data.tags[MODEL_URI]
    models = client().search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    if not models:
        raise LrnoiseError(f"run {run_id} has no logged model: pass a finished training run or --model-uri")
    return f"models:/{models[0].model_id}"


def temp_dir():
    return tempfile.TemporaryDirectory(prefix="lrnoise-")


# ---------------------------------------------------------------- searches
def search_runs(experiment_ids: list[str], filter_string: str = "", finished_only: bool = True) -> list:
    """All matching runs, every page (the store pages at 1000)."""
    if finished_only:
        status = "attributes.status = 'FINISHED'"
        filter_string = f"{filter_string} and {status}" if filter_string else status
    c, runs, token = client(), [], None
    while True:
        page = c.search_runs(experiment_ids, filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
                             max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def train_runs_frame(experiment_id: str, param_filters: dict) -> "pd.DataFrame":
    """Every finished training run of the experiment (all pages, one search): run_id, params, metrics."""
    import pandas as pd
    clauses = [f"tags.`{KIND}` = 'train'"] + [f"params.{k} = '{v}'" for k, v in param_filters.items()]
    rows = []
    for run in search_runs([experiment_id], " and ".join(clauses)):
        rows.append({"run_id": run.info.run_id, **{k: run.data.params.get(k) for k in TRAIN_PARAMS},
                     **run.data.metrics})
    return pd.DataFrame(rows)


def normalized_accuracy_columns(columns) -> list[tuple[float, str, str]]:
    """(eta, A^eta column, its CI column) for every normalized_accuracy_eta_<pct> column, by eta."""
    prefix = NORMALIZED_ACCURACY_ETA
    found = [(float(c[len(prefix):]) / 100, c) for c in columns if c.startswith(prefix)]
    return [(eta, c, normalized_accuracy_ci95_eta(eta)) for eta, c in sorted(found)]


def set_alias_for_run(run_id: str, alias: str) -> str | None:
    """Points registry alias `alias` at the model version a training run registered; returns 'name/version'."""
    c = client()
    versions = c.search_model_versions(f"run_id = '{run_id}'")
    if not versions:
        return None
    version = max(versions, key=lambda v: int(v.version))
    c.set_registered_model_alias(version.name, alias, version.version)
    return f"{version.name}/{version.version}"


def log_report(experiment_id: str, folder: Path) -> str:
    """A `report` run in the experiment holding every table and figure as artifacts."""
    with mlflow.start_run(experiment_id=experiment_id, run_name="report", tags={KIND: "report"}) as active:
        mlflow.log_artifacts(str(folder))
    return active.info.run_id


# ---------------------------------------------------------------- the study: lookups, parent run, stale runs
STUDY_PARAMS = ("preset", "datasets", "models", "optimizers", "lrs", "seeds", "epochs", "etas", "trials")
STUDY_METRICS = ("configurations", "failed", "trained", "reused")


def noise_params(etas, trials, seed, targets, noise, ci_target=None, max_trials=None) -> dict:
    """A noise evaluation's params (also its configuration key): the auto-trial settings only when used."""
    params = dict(zip(NOISE_PARAMS, (list(etas), trials, seed, targets, noise)))
    if trials == "auto":
        params.update(zip(NOISE_AUTO_PARAMS, (ci_target, max_trials)))
    return params


def runs_with_config(experiment_id: str, kind: str, key: str, source_run_id: str | None = None) -> list:
    """Every run (any status, not deleted) of `kind` with configuration key `key`, newest first."""
    clauses = [f"tags.`{KIND}` = '{kind}'", f"tags.`{CONFIG_KEY}` = '{key}'"]
    if source_run_id:
        clauses.append(f"tags.`{SOURCE_RUN_ID}` = '{source_run_id}'")
    runs = search_runs([experiment_id], " and ".join(clauses), finished_only=False)
    return sorted(runs, key=lambda r: r.info.start_time, reverse=True)


def mark_failed(run_id: str) -> None:
    client().set_terminated(run_id, "FAILED")


def entry_point_experiment() -> str | None:
    """Inside `mlflow run`, the name of the experiment holding the entry point's run (else None)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    return experiment_name(get_run(run_id).info.experiment_id) if run_id else None


def start_study_run(experiment_id: str, params: dict) -> str:
    """The study's parent run: `mlflow run`'s own run if inside one, else an unfinished study run with the
    same configuration (resumed after a crash), else a new one. Kept out of the fluent run stack so that
    training and noise-eval runs can start beside it."""
    c = client()
    key = config_key(params)
    run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    unfinished = [r for r in runs_with_config(experiment_id, "study", key) if r.info.status != "FINISHED"]
    if run_id is None and unfinished:
        run_id = unfinished.pop(0).info.run_id
    for stale in unfinished:
        if stale.info.run_id != run_id:
            mark_failed(stale.info.run_id)
    if run_id is None:
        run_id = c.create_run(experiment_id, run_name=f"study-{params['preset']}").info.run_id
    else:
        c.update_run(run_id, status="RUNNING")
    c.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in _new_params(run_id, params, strict=False).items()],
                tags=[mlflow.entities.RunTag(KIND, "study"), mlflow.entities.RunTag(CONFIG_KEY, key)])
    return run_id


def end_study_run(run_id: str, counts: tuple, ok: bool) -> None:
    """Closes the study run with its counts (configurations, failed, trained, reused)."""
    log_metrics(dict(zip(STUDY_METRICS, counts)), run_id=run_id)
    client().set_terminated(run_id, "FINISHED" if ok else "FAILED")
