"""Shared fixtures: a throwaway sqlite tracking store per test, quiet TensorFlow, no telemetry."""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path

import pytest

from support.stores import new_store


def pytest_configure(config):
    """Where tests run (not in pytest-xdist's controller, which only hands out files): Keras, MLflow and the
    secured tracking server fixture of the access tests, loaded once up front (~6 s of imports the controller
    need not pay)."""
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import keras  # noqa: F401  (first: its backend's import sets environment variables, e.g. TF2_BEHAVIOR, KMP_*)
    import mlflow  # noqa: F401

    config.pluginmanager.import_plugin("support.auth_server")


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
