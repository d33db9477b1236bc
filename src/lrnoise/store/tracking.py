"""The tracking layer's core: every param / metric / tag name, runs, the registry, and "already ran?".

The tracking layer (this module, leases.py, server.py) holds every MLflow call. Imports run one way:
server <- tracking <- leases; a run's lifecycle (start, heartbeat, end) and "already ran?" live in leases.py.

Runs: a `train` run per trained model (params, per-epoch metrics, the model, checkpoints); a `noise_eval`
run per noise evaluation, child of its training run; a `report` run; a `study` run parenting the grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shlex
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from lrnoise import NOISE_SEMANTICS, TRAINING_SEMANTICS, __version__, names
from lrnoise.config import StudySpec, TrainConfig
from lrnoise.errors import LrnoiseError
from lrnoise.store import server

if TYPE_CHECKING:
    import pandas as pd

SEMANTICS_OF = {"train": TRAINING_SEMANTICS, "noise_eval": NOISE_SEMANTICS}  # what this code trains / measures


def semantics_tags(kind: str) -> dict:
    """The tags a run of `kind` records about the code that made it (none for a study, claim or report run)."""
    return (
        {names.SEMANTICS: str(SEMANTICS_OF[kind]), names.LRNOISE_VERSION: __version__} if kind in SEMANTICS_OF else {}
    )


def run_semantics(run) -> int:
    """The semantics number a train / noise-eval run was made under; 0 for a run older than the tag."""
    return int(run.data.tags.get(names.SEMANTICS, "0"))


def check_resumable(run, kind: str) -> None:
    """A run of `kind` made by lrnoise under other semantics cannot be continued by this code (its first
    epochs would mean something else than its last); a run lrnoise has not touched yet (`mlflow run`'s own)
    can."""
    if kind in SEMANTICS_OF and names.KIND in run.data.tags and run_semantics(run) != SEMANTICS_OF[kind]:
        raise LrnoiseError(
            f"run {run.info.run_id} was made under {kind} semantics {run_semantics(run)}, this lrnoise "
            f"{__version__} works under {SEMANTICS_OF[kind]}: start a new run instead of resuming it"
        )


def client() -> MlflowClient:
    return MlflowClient()


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def set_tracking_uri(uri: str) -> None:
    mlflow.set_tracking_uri(uri)


@contextlib.contextmanager
def environment_defaults(values: dict):
    """Inside the block, each of `values` is in the environment unless the user set it (processes started in
    the block inherit it); after the block the environment is exactly as before, so a setting made for one
    command never reaches what runs later in the same process (a notebook, a test)."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def quiet_loggers():
    """Inside the block: MLflow's and alembic's INFO chatter (database set-up) off, so an error stays one line,
    and no "View run ... at" line for every run a command ends (its worker processes inherit that)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        with environment_defaults({"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# An unreachable server fails in seconds rather than after MLflow's long default retries (report: it only reads)
FAIL_FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def fail_fast_http():
    """A block in which an unreachable server fails in seconds (FAIL_FAST_HTTP, unless the user set them)."""
    return environment_defaults(FAIL_FAST_HTTP)


_EXPERIMENTS: dict = {}  # (store, user, experiment name) -> id, once created / checked writable in this process


def ensure_experiment(name: str) -> str:
    """Id of experiment `name`, created (and tagged for the runs-table UI) if missing. Looked up once per
    process, store and user (a study asks for it for every run)."""
    key = (tracking_uri(), os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_TOKEN"), name)
    if key not in _EXPERIMENTS:
        _EXPERIMENTS[key] = _ensure_experiment(name)
    return _EXPERIMENTS[key]


def file_store_notice() -> str | None:
    """One line when MLflow will write the file store in ./mlruns instead of the database a user expects (no
    MLFLOW_TRACKING_URI and a ./mlruns folder here: MLflow then keeps using the folder); else None."""
    if os.environ.get("MLFLOW_TRACKING_URI") or not Path("mlruns").is_dir():
        return None
    return (
        "note: ./mlruns exists and MLFLOW_TRACKING_URI is unset, so MLflow uses the file store in ./mlruns, not "
        "sqlite:///mlflow.db (`mlflow ui --backend-store-uri sqlite:///mlflow.db` will not show these runs, and a "
        "study's parallel workers get no tracking server); set MLFLOW_TRACKING_URI=sqlite:///mlflow.db or move ./mlruns"
    )


def writable_experiment(name: str) -> str:
    """Id of the experiment a command writes into (under `mlflow run`, the entry point's, else `name`), created
    if missing; a user who may not write it is refused here, before anything heavy is imported."""
    return ensure_experiment(entry_point_experiment() or name)


def _set_experiment_kind(c, exp_id: str) -> None:
    """Tag the experiment's kind. The store inserts a new tag after looking for it, so two studies tagging a new
    experiment at the same moment can collide (UNIQUE constraint failed on experiment_tags, seen with two server
    processes over sqlite); the second attempt finds the tag and updates it. Refusals (permissions) are not retried."""
    try:
        c.set_experiment_tag(exp_id, *names.EXPERIMENT_KIND)
    except MlflowException as exc:
        if server_error(exc) is not None:
            raise
        c.set_experiment_tag(exp_id, *names.EXPERIMENT_KIND)


def _ensure_experiment(name: str) -> str:
    c = client()
    try:
        exp = c.get_experiment_by_name(name)
        if exp is None:
            try:
                exp = c.get_experiment(c.create_experiment(name))
            except MlflowException:  # two studies started at once: the other one created it first
                exp = c.get_experiment_by_name(name)
                if exp is None:
                    raise
        exp_id = exp.experiment_id
        # also the write check: a user with READ permission only is refused here, before any run exists
        _set_experiment_kind(c, exp_id)
    except MlflowException as exc:
        raise LrnoiseError(
            server_error(exc) or f"tracking server {tracking_uri()} refused: {exc.message.splitlines()[0][:200]}"
        ) from None
    return exp_id


def server_error(exc: BaseException) -> str | None:
    """One line for an error of the tracking server (refused, unauthorised, unreachable after MLflow's
    retries), naming the server; None for any other error. A rerun resumes what was interrupted."""
    import requests

    uri = tracking_uri()
    if isinstance(exc, MlflowException):
        code = getattr(exc, "error_code", "")
        first = (exc.message or str(exc)).strip().splitlines()[0][:200]
        if code in ("PERMISSION_DENIED", "UNAUTHENTICATED") or "401" in first or "403" in first:
            return f"tracking server {uri} denied the request ({code or 'not authorised'}): {first}"
        if "API request" in first or "Max retries" in first or code in ("TEMPORARILY_UNAVAILABLE",):
            return f"tracking server {uri} unreachable: {first} (rerun to resume)"
        return None
    if isinstance(exc, requests.exceptions.RequestException):
        return f"tracking server {uri} unreachable: {type(exc).__name__} (rerun to resume)"
    return None


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
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise LrnoiseError(f"no run {run_id!r} in {tracking_uri()}") from None
        raise LrnoiseError(
            server_error(exc)
            or f"cannot read run {run_id!r} from {tracking_uri()}: {exc.message.splitlines()[0][:200]}"
        ) from None


# ---------------------------------------------------------------- runs
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
        elif strict and not _same_value(existing[key], text):
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
    fresh = _new_params(client().get_run(run_id).data.params, params, run_id, strict)
    client().log_batch(
        run_id,
        params=[mlflow.entities.Param(k, v) for k, v in fresh.items()],
        tags=[mlflow.entities.RunTag(k, v) for k, v in tags.items()],
    )


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


def mark_resumed(epoch: int) -> None:
    """Tags the active training run as continued from its checkpoint after `epoch` (the latest resume)."""
    mlflow.set_tag(names.RESUMED_AFTER_EPOCH, str(epoch))


def last_step(run_id: str, metric: str) -> int:
    """The highest step of `metric` already logged on the run (0 if none): a resumed training run does not
    log an epoch twice."""
    history = client().get_metric_history(run_id, metric)
    return max((m.step for m in history), default=0)


def metric_entities(metrics: dict, step: int | None, when: float) -> list:
    """`metrics` as MLflow entities logged at `when` (unix time), for a log_batch write."""
    return [mlflow.entities.Metric(k, float(v), int(when * 1000), step or 0) for k, v in metrics.items()]


TRAIN_SPLIT, TEST_SPLIT = "train", "test"  # dataset inputs' contexts: the split a run used


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


def log_metrics(metrics: dict, step: int | None = None, run_id: str | None = None) -> None:
    if run_id is None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
    else:
        client().log_batch(run_id, metrics=metric_entities(metrics, step, time.time()))


def log_artifacts(folder: str) -> None:
    mlflow.log_artifacts(folder)


def experiment_name(experiment_id: str) -> str:
    return client().get_experiment(experiment_id).name


def log_noise_result(
    run_metrics: dict,
    per_level: list[tuple[str, str, dict]],
    summary_columns: tuple,
    train_run_id: str | None,
    prefix: str,
) -> None:
    """A noise evaluation's metrics on the active noise-eval run, its summary also onto the training run.

    run_metrics: {name: value} of run-level metrics (names from this module); per_level: (level_name, label,
    {column: value}) per level; summary_columns: the per-level columns copied onto the training run, together
    with A_avr, under `prefix` (see names.summary_prefix), so that its runs table shows every configuration."""
    metrics = dict(run_metrics)
    summary = {prefix + names.AVG_NORMALIZED_ACCURACY: run_metrics[names.AVG_NORMALIZED_ACCURACY]}
    for level_name, label, values in per_level:
        for column, value in values.items():
            metrics[names.level_metric(column, level_name, label)] = value
            if column in summary_columns:
                summary[prefix + names.level_metric(column, level_name, label)] = value
    log_metrics(metrics)
    if train_run_id:
        log_metrics(summary, run_id=train_run_id)


def resumable_training(run_id: str):
    """Training run `run_id`, or a one-line error if it is not an unfinished lrnoise training run."""
    run = get_run(run_id)
    if run.info.status == "FINISHED":
        raise LrnoiseError(f"run {run_id} already finished: nothing to resume")
    if run.data.tags.get(names.KIND) != "train":
        raise LrnoiseError(f"run {run_id} is not a training run of lrnoise")
    return run


def dataset_of(train_run) -> str | None:
    """The dataset a training run trained on (its `dataset` param)."""
    return train_run.data.params.get(names.TRAIN_PARAMS[0])


def learned(train_run) -> bool:
    """False when the training run was tagged as not having learned (a_0 not above chance)."""
    return train_run.data.tags.get(names.LEARNED, "true") != "false"


def source_of(run_id: str | None = None, model_uri: str | None = None):
    """The lrnoise training run behind a run id or a model URI, or None for a model from elsewhere."""
    if run_id:
        run = get_run(run_id)
        if run.data.tags.get(names.KIND) != "train":
            raise LrnoiseError(
                f"run {run_id} is not an lrnoise training run (kind "
                f"{run.data.tags.get(names.KIND, 'none')!r}): pass a training run id"
            )
        if run.info.status != "FINISHED":
            raise LrnoiseError(f"training run {run_id} is {run.info.status}, not FINISHED: resume it first")
        return run
    if not str(model_uri).startswith(("models:/", "runs:/")):
        raise LrnoiseError(
            f"model URI {model_uri!r} must look like models:/<name>/<version>, "
            "models:/<name>@<alias> or models:/<model_id>"
        )
    try:
        source_id = mlflow.models.get_model_info(model_uri).run_id
    except MlflowException as exc:
        raise LrnoiseError(f"cannot find model {model_uri!r}: {exc.message.splitlines()[0]}") from None
    except OSError as exc:
        raise LrnoiseError(f"cannot find model {model_uri!r}: {exc}") from None
    if not source_id:
        return None
    run = get_run(source_id)
    return run if run.data.tags.get(names.KIND) == "train" else None


def evaluation_target(run_id: str | None, model_uri: str | None, experiment: str | None, force: bool) -> tuple:
    """(the training run or None, the model URI, the experiment name) a noise evaluation of `run_id` or
    `model_uri` goes to, with every refusal made now, before the model and data load (and before the noise code
    is imported): not exactly one of the two, no such run or model, a model that did not learn (unless `force`),
    a user who may not write the experiment (by default the training run's)."""
    if bool(run_id) == bool(model_uri):
        raise LrnoiseError("give exactly one of --run-id (a training run) or --model-uri (models:/...)")
    source = source_of(run_id=run_id, model_uri=model_uri)  # training run or None
    if run_id:
        model_uri = model_uri_of_run(run_id, run=source)
    if source is not None and not force and not learned(source):
        raise LrnoiseError(
            f"training run {source.info.run_id} did not learn (test accuracy not above chance): "
            "its noise resistance means nothing; pass --force to evaluate it anyway"
        )
    name = experiment or (experiment_name(source.info.experiment_id) if source else names.DEFAULT_EXPERIMENT)
    ensure_experiment(name)  # a READ-only user is refused here
    return source, model_uri, name


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


# ---------------------------------------------------------------- checkpoints
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


# ---------------------------------------------------------------- models and the registry
@functools.lru_cache(maxsize=8)
def _signature(input_shape: tuple, input_dtype: str, classes: int):
    """The model signature (images in, class probabilities out), worked out once per shape: no predict call."""
    from mlflow.models import infer_signature

    return infer_signature(np.zeros((1, *input_shape), input_dtype), np.zeros((1, classes), np.float32))


@functools.lru_cache(maxsize=1)
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


def log_model(
    model, sample_input: np.ndarray, registered_model: str, config: TrainConfig, run_id: str, learned: bool = True
):
    """Logs the Keras model (mlflow.keras flavor) and registers it, the version tagged with every swept field
    (dataset, model, optimizer, lr, batch size, train noise, seed), the training run and whether it learned;
    returns (model_uri, model_version)."""
    version_tags = {
        **{k: names.canonical(getattr(config, k)) for k in names.VERSION_TAGS},
        names.SOURCE_RUN_ID: run_id,
        names.LEARNED: str(learned).lower(),
    }
    mlflow.set_tag(names.LEARNED, str(learned).lower())  # before the model: a run whose logging fails still says it
    signature = _signature(tuple(sample_input.shape[1:]), str(sample_input.dtype), int(model.output_shape[-1]))
    # No input example: MLflow would reload the model and predict on it to validate serving (one more model
    # load and prediction per training); the signature documents the input.
    info = mlflow.keras.log_model(
        model, name=names.MODEL_ARTIFACT, signature=signature, pip_requirements=list(_pip_requirements())
    )
    version = _register(info.model_id, registered_model, run_id, version_tags)
    mlflow.set_tag(names.MODEL_URI, info.model_uri)
    return info.model_uri, version


def _register(model_id: str, name: str, run_id: str, tags: dict) -> str:
    """A new version of registered model `name` (created if new) for logged model `model_id` of run `run_id`,
    created with its tags; returns the version. What log_model(registered_model_name=...) registers (source
    models:/<model_id>, run id, model id, and the logged model's link to its version) without its look-ups of the
    run's artifacts and logged models, and with the tags in the same request instead of one request per tag."""
    c = client()
    try:
        c.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = c.create_model_version(name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id)
    if not server.is_http(tracking_uri()):  # a tracking server links the new logged model to its version itself
        c.set_logged_model_tags(
            model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([{"name": version.name, "version": version.version}])}
        )
    return str(version.version)


def load_model(model_uri: str):
    """A Keras model from `models:/<name>/<version>`, `models:/<name>@<alias>`, `models:/<model_id>`, `runs:/...`."""
    try:
        return mlflow.keras.load_model(model_uri)
    except MlflowException as exc:
        raise LrnoiseError(f"cannot load model {model_uri!r}: {exc.message.splitlines()[0]}") from None
    except OSError as exc:
        raise LrnoiseError(f"cannot load model {model_uri!r}: {exc}") from None


def model_uri_of_run(run_id: str, run=None) -> str:
    """`models:/<model_id>` of the model a training run logged, or an error if it logged none. `run`: the run
    `run_id`, when the caller has fetched it already."""
    run = run or get_run(run_id)
    if names.MODEL_URI in run.data.tags:
        return run.data.tags[names.MODEL_URI]
    models = client().search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    if not models:
        raise LrnoiseError(f"run {run_id} has no logged model: pass a finished training run or --model-uri")
    return f"models:/{models[0].model_id}"


def temp_dir():
    return tempfile.TemporaryDirectory(prefix="lrnoise-")


# ---------------------------------------------------------------- searches
SEARCH_PAGE = 1000  # runs per search request: the most a tracking store returns at once


def search_runs(experiment_ids: list[str], filter_string: str = "", finished_only: bool = True) -> list:
    """All matching runs, every page (SEARCH_PAGE runs a request)."""
    if finished_only:
        status = "attributes.status = 'FINISHED'"
        filter_string = f"{filter_string} and {status}" if filter_string else status
    c, runs, token = client(), [], None
    while True:
        page = c.search_runs(
            experiment_ids,
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=SEARCH_PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def train_runs_frame(experiment_id: str, param_filters: dict) -> pd.DataFrame:
    """Every finished training run of the experiment (all pages, one search), one typed row each: run_id, the
    TrainConfig's fields as their types (a field the run did not log takes its default: train_noise 0 for a
    clean run), `learned`, its configuration key and semantics number, and its metrics. The one way runs come
    back from the store as values; report, stats, figures and the notebook read this frame."""
    import pandas as pd

    clauses = [f"tags.`{names.KIND}` = 'train'"] + [f"params.{k} = '{v}'" for k, v in param_filters.items()]
    rows = []
    for run in search_runs([experiment_id], " and ".join(clauses)):
        rows.append(
            {
                "run_id": run.info.run_id,
                **dataclasses.asdict(TrainConfig.from_params(run.data.params)),
                "learned": run.data.tags.get(names.LEARNED, "true") != "false",
                "config_key": run.data.tags.get(names.CONFIG_KEY, run.info.run_id),
                "semantics": run_semantics(run),
                **run.data.metrics,
            }
        )
    columns = ["run_id", *names.TRAIN_PARAMS, "learned", "config_key", "semantics"]
    return pd.DataFrame(rows, columns=columns if not rows else None)


def noise_runs_frame(experiment_id: str) -> pd.DataFrame:
    """Every finished noise evaluation of a training run (all pages, one search): its source run, its
    configuration (key, name, fields from the noise.* params), its run key (configuration and precision) and
    semantics number, and metrics."""
    import pandas as pd

    rows = []
    for run in search_runs([experiment_id], f"tags.`{names.KIND}` = 'noise_eval'"):
        source = run.data.tags.get(names.SOURCE_RUN_ID)
        if not source or names.NOISE_CONFIG not in run.data.tags:
            continue  # a bare model URI's evaluation, or one from before configurations had keys
        fields = {
            k[len(names.NOISE_PARAM_PREFIX) :]: v
            for k, v in run.data.params.items()
            if k.startswith(names.NOISE_PARAM_PREFIX)
        }
        rows.append(
            {
                "eval_run_id": run.info.run_id,
                "run_id": source,
                "noise_config": run.data.tags[names.NOISE_CONFIG],
                "noise_config_name": run.data.tags.get(names.NOISE_CONFIG_NAME, ""),
                "config_fields": fields,
                "run_key": run.data.tags.get(names.CONFIG_KEY, run.info.run_id),
                "semantics": run_semantics(run),
                "start_time": run.info.start_time,
                **run.data.metrics,
            }
        )
    return pd.DataFrame(rows)


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
    """A `report` run in the reported experiment holding every table and figure as artifacts. Under `mlflow run`
    the entry point's run is that run when it is in the reported experiment; when `mlflow run` put it in another
    one (no --experiment-name: Default), the report run is made in the reported experiment all the same and the
    entry point's run is tagged with its id (names.REPORT_RUN_ID)."""
    entry = os.environ.get("MLFLOW_RUN_ID")
    elsewhere = entry is not None and get_run(entry).info.experiment_id != experiment_id
    if elsewhere:  # consumed here as start_run would consume it, without resuming a run of the other experiment
        del os.environ["MLFLOW_RUN_ID"]
    with mlflow.start_run(experiment_id=experiment_id, run_name="report", tags={names.KIND: "report"}) as active:
        mlflow.log_artifacts(str(folder))
    if elsewhere:
        client().set_tag(entry, names.REPORT_RUN_ID, active.info.run_id)
    return active.info.run_id


# ---------------------------------------------------------------- the study: "already ran?", parent run, stale runs
STUDY_PARAMS = tuple(f.name for f in dataclasses.fields(StudySpec) if f.name != "batch_size")  # = batch_sizes
STUDY_METRICS = ("configurations", "failed", "trained", "reused", "did_not_learn")


def runs_with_config(
    experiment_id: str, kind: str, key: str, source_run_id: str | None = None, same_semantics: bool = False
) -> list:
    """Every run (any status, not deleted) of `kind` with configuration key `key`, newest first; with
    `same_semantics`, only those made under this code's semantics number for `kind`."""
    clauses = [f"tags.`{names.KIND}` = '{kind}'", f"tags.`{names.CONFIG_KEY}` = '{key}'"]
    if source_run_id:
        clauses.append(f"tags.`{names.SOURCE_RUN_ID}` = '{source_run_id}'")
    if same_semantics:
        clauses.append(f"tags.`{names.SEMANTICS}` = '{SEMANTICS_OF[kind]}'")
    runs = search_runs([experiment_id], " and ".join(clauses), finished_only=False)
    return sorted(runs, key=lambda r: r.info.start_time, reverse=True)


def finished_semantics(experiment_id: str, kind: str) -> list[tuple[str, str | None, str, int]]:
    """(configuration key, source run id or None, run id, semantics number) of every FINISHED run of `kind`,
    newest first (all pages, one search): what a study can reuse, read once before it runs."""
    runs = search_runs([experiment_id], f"tags.`{names.KIND}` = '{kind}'")
    runs = sorted(runs, key=lambda r: r.info.start_time, reverse=True)
    return [
        (r.data.tags.get(names.CONFIG_KEY, ""), r.data.tags.get(names.SOURCE_RUN_ID), r.info.run_id, run_semantics(r))
        for r in runs
    ]


def mark_failed(run_id: str) -> None:
    client().set_terminated(run_id, "FAILED")


def entry_point_experiment() -> str | None:
    """Inside `mlflow run`, the name of the experiment holding the entry point's run (else None)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    return experiment_name(get_run(run_id).info.experiment_id) if run_id else None


def where_to_look(experiment_id: str) -> str:
    """Where a person finds the runs: the UI's runs table for an HTTP server (MLflow 3.17 opens an experiment
    on a GenAI overview; the runs table is at #/experiments/<id>/runs), else how to open the UI."""
    uri = tracking_uri()
    if server.is_http(uri):
        return f"runs table: {uri.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return (
        f"runs: `mlflow ui --backend-store-uri {uri}`, then open "
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
    )
