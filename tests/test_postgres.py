"""The deployment a lab runs (docs/deployment.md): `mlflow server` with a PostgreSQL backend store and proxied
artifacts (--artifacts-destination), PostgreSQL itself from the pgserver wheel (listening on a Unix socket only).
On it: two studies at once, one killed with SIGKILL and started again, and the server restarted mid-study."""

import os
import signal
import subprocess
import time

import mlflow
import pytest

from support.commands import study_cmd
from support.servers import kill_server, point_at_new_server, start_server
from support.stores import one_finished_of_each, runs_of

pytestmark = pytest.mark.deployment  # its own CI step (.ci/run), not the README's test command

pgserver = pytest.importorskip("pgserver")


@pytest.fixture
def postgres(tmp_path):
    """A fresh PostgreSQL server and an empty `mlflow` database; its SQLAlchemy URI (psycopg 3, Unix socket)."""
    pg = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="stop")
    pg.psql("CREATE DATABASE mlflow;")
    try:
        yield f"postgresql+psycopg://postgres:@/mlflow?host={tmp_path / 'pgdata'}"
    finally:
        pg.cleanup()


@pytest.mark.e2e
def test_studies_on_a_postgres_server_survive_a_kill_and_a_server_restart(postgres, tmp_path, monkeypatch):
    artifacts = tmp_path / "artifacts"
    serve = ("--artifacts-destination", str(artifacts))
    port, server = point_at_new_server(postgres, tmp_path, monkeypatch, *serve)
    lrs, longer = "0.001,0.002", ("--epochs", "6", "--patience", "0", "--checkpoint-every", "0")
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}  # retry sooner through the restart
    first = second = None

    def study(name, grid):
        log = open(tmp_path / name, "w")
        return subprocess.Popen(
            study_cmd(grid, *longer), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    try:
        first = study("first", lrs)
        client = mlflow.tracking.MlflowClient()
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:  # the first study mid-training: an epoch logged
            time.sleep(0.5)
            running = [r for r in runs_of("train") if r.info.status == "RUNNING"] if _experiment() else []
            if running and client.get_metric_history(running[0].info.run_id, "loss"):
                break
        assert first.poll() is None, open(tmp_path / "first").read()[-3000:]
        second = study("second", lrs + ",0.003")  # a second study on an overlapping grid, at once
        os.killpg(first.pid, signal.SIGKILL)  # a study killed mid-training
        first.wait()
        kill_server(server)  # and the server restarted on the same database a few seconds later
        time.sleep(3)
        server = start_server(postgres, port, tmp_path, *serve)
        again = subprocess.run(
            study_cmd(lrs, *longer), stdout=open(tmp_path / "again", "w"), stderr=subprocess.STDOUT, timeout=600
        )
        assert again.returncode == 0, open(tmp_path / "again").read()[-3000:]
        assert second.wait(timeout=600) == 0, open(tmp_path / "second").read()[-3000:]
        logs = open(tmp_path / "second").read() + open(tmp_path / "again").read()
        assert "train resumed" in logs  # the killed study's training, continued by one of the others
        one_finished_of_each([0.001, 0.002, 0.003])  # each trained once, evaluated once, nothing RUNNING
        for run in runs_of("train"):
            if run.info.status == "FINISHED":  # no epoch lost or logged twice; artifacts proxied by the server
                assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == list(range(1, 7))
                assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert any(artifacts.rglob("MLmodel"))  # the logged models sit in the server's artifact store
        assert not runs_of("claim")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:  # a failed assertion: no study outlives the test
                os.killpg(proc.pid, signal.SIGKILL)
        kill_server(server)
        mlflow.set_tracking_uri(None)


def _experiment():
    return mlflow.get_experiment_by_name("lrnoise")
