"""The store and this process's session with it: the tracking URI and client, experiments (created, found,
checked writable), one run read or many searched, the environment and logging a command runs under, and the
tracking server's errors as one line."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mlflow
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lrnoise import names
from lrnoise.errors import LrnoiseError


def client() -> MlflowClient:
    return MlflowClient()


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def set_tracking_uri(uri: str) -> None:
    mlflow.set_tracking_uri(uri)


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


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


def experiment_name(experiment_id: str) -> str:
    return client().get_experiment(experiment_id).name


def entry_point_experiment() -> str | None:
    """Inside `mlflow run`, the name of the experiment holding the entry point's run (else None)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    return experiment_name(get_run(run_id).info.experiment_id) if run_id else None


def where_to_look(experiment_id: str) -> str:
    """Where a person finds the runs: the UI's runs table for an HTTP server (MLflow 3.17 opens an experiment
    on a GenAI overview; the runs table is at #/experiments/<id>/runs), else how to open the UI."""
    uri = tracking_uri()
    if is_http(uri):
        return f"runs table: {uri.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return (
        f"runs: `mlflow ui --backend-store-uri {uri}`, then open "
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
    )


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
