"""Shared fixtures: a throwaway sqlite tracking store per test, quiet TensorFlow, no telemetry."""

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path

import pytest

from lrnoise import names

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Where tests run (not in pytest-xdist's controller, which only hands out files): Keras, MLflow and the
    secured tracking server fixture of the access tests, loaded once up front (~6 s of imports the controller
    need not pay)."""
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import keras  # noqa: F401  (first: its backend's import sets environment variables, e.g. TF2_BEHAVIOR, KMP_*)
    import mlflow  # noqa: F401

    config.pluginmanager.import_plugin("auth_server")


@pytest.fixture(autouse=True)
def environment_unchanged():
    """No test leaves the environment changed for the tests after it (a command's settings must end with it)."""
    before = dict(os.environ)
    yield
    changed = {
        k
        for k in before.keys() | os.environ.keys()
        if before.get(k) != os.environ.get(k) and k != "PYTEST_CURRENT_TEST"
    }  # pytest's own
    for key in changed:
        if key in before:
            os.environ[key] = before[key]
        else:
            del os.environ[key]
    assert not changed, f"the test left these environment variables changed: {sorted(changed)}"


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty sqlite tracking store with every MLflow migration applied, made once per test process (a new
    store replays all of MLflow's migrations: ~1.2 s; a copy of this one: ~20 ms)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("migrated") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "mlruns")).engine.dispose()  # schema, migrated
    return path


def new_store(migrated: Path, path: Path) -> str:
    """A fresh store at `path`, copied from the migrated empty one, its Default experiment's artifacts beside it
    (as a store made there would have them); returns its URI."""
    shutil.copyfile(migrated, path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(path.parent / "mlruns" / "0"),)
        )
    return f"sqlite:///{path}"


@pytest.fixture
def store(tmp_path, monkeypatch, migrated_store):
    """A fresh sqlite tracking store (and artifact folder) in tmp_path, also seen by subprocesses."""
    import mlflow

    uri = new_store(migrated_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # mlflow.set_registry_uri(uri) also exports MLFLOW_REGISTRY_URI and set_registry_uri(None) leaves it: without
    # the restore below, later subprocesses of the worker (servers, CLI runs) register models in this old store
    registry_env = os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    if registry_env is None:
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    else:
        os.environ["MLFLOW_REGISTRY_URI"] = registry_env


def runs_of(kind: str, experiment: str = "lrnoise") -> list:
    """Every run of lrnoise kind `kind` (train, noise_eval, study, claim, ...) in `experiment`."""
    import mlflow

    return [
        r
        for r in mlflow.search_runs(
            experiment_names=[experiment], output_format="list", filter_string=f"tags.`{names.KIND}` = '{kind}'"
        )
    ]


def run_statuses(experiment="lrnoise"):
    """{run_id: status} of every run in `experiment` (all lifecycle stages)."""
    import mlflow

    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    return {r.info.run_id: r.info.status for r in client.search_runs([exp.experiment_id], max_results=1000)}


def start_server(store: str, port: int, cwd, *extra: str) -> subprocess.Popen:
    """`mlflow server` as MLflow starts it by default (uvicorn, one worker) over `store` on 127.0.0.1:`port`, in a
    process group of its own (see kill_server); returns once /health answers. Without MLflow's GenAI job runner
    (a runner and seven huey consumer processes, ~16 s of CPU a start): tracking never uses it."""
    import urllib.request

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            store,
            *extra,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.5)
    kill_server(proc)
    raise AssertionError("mlflow server did not start")


def point_at_new_server(store: str, tmp_path, monkeypatch, *extra: str) -> tuple[int, subprocess.Popen]:
    """start_server over `store` on a free port of 127.0.0.1, this process and its children pointed at it (the
    working folder tmp_path); returns (port, server). The caller kills the server and unsets the URI."""
    import mlflow

    from lrnoise.store import server as tracking_server

    port = tracking_server._free_port()
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return port, start_server(store, port, tmp_path, *extra)


def kill_server(proc: subprocess.Popen) -> None:
    """`mlflow server` with its uvicorn and job-runner children: killing `mlflow server` alone leaves them running."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone already
        pass
    proc.wait()


def study_cmd(lrs: str, *extra: str) -> list[str]:
    """A small study of `lrs` in its own process: ResNet8s without the gradient-noise measurement (what is tested
    is who runs which configuration, not training)."""
    options = (
        "--models resnet8 --optimizers adam --seeds 0 --trials 1 --etas 0.1 --noise additive --batch-size 128 "
        "--grad-noise-batches 0 --no-report --workers 1"
    )
    return [sys.executable, "-m", "lrnoise.cli", "study", "--lrs", lrs, *options.split(), *extra]


def one_finished_of_each(lrs) -> None:
    """Exactly one FINISHED training per lr, one FINISHED evaluation per training, nothing RUNNING."""
    trains = [r for r in runs_of("train") if r.info.status == "FINISHED"]
    assert sorted(float(r.data.params["lr"]) for r in trains) == sorted(lrs)  # one FINISHED training per lr
    evals = [r for r in runs_of("noise_eval") if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["source_run_id"] for r in evals) == sorted(r.info.run_id for r in trains)
    assert "RUNNING" not in run_statuses().values()
