"""Shared fixtures: a throwaway sqlite tracking store per test, quiet TensorFlow, no telemetry."""
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path

import mlflow
import pytest

from lrnoise import tracking

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh sqlite tracking store (and artifact folder) in tmp_path, also seen by subprocesses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
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
    return [r for r in mlflow.search_runs(experiment_names=[experiment], output_format="list",
                                          filter_string=f"tags.`{tracking.KIND}` = '{kind}'")]


def run_statuses(experiment="lrnoise"):
    """{run_id: status} of every run in `experiment` (all lifecycle stages)."""
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    return {r.info.run_id: r.info.status for r in client.search_runs([exp.experiment_id], max_results=1000)}


def start_server(store: str, port: int, cwd, *extra: str) -> subprocess.Popen:
    """`mlflow server` as MLflow starts it by default (uvicorn, one worker) over `store` on 127.0.0.1:`port`, in a
    process group of its own (see kill_server); returns once /health answers."""
    import urllib.request
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, *extra,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.5)
    kill_server(proc)
    raise AssertionError("mlflow server did not start")


def kill_server(proc: subprocess.Popen) -> None:
    """`mlflow server` with its uvicorn and job-runner children: killing `mlflow server` alone leaves them running."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone already
        pass
    proc.wait()
