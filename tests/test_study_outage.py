"""A study rides out a tracking server that goes away mid-training and comes back: nothing lost, nothing logged
twice. (Several studies at once, killed studies: test_study_leases.py.)"""

import os
import subprocess
import time

import mlflow
import pytest

from support.commands import study_cmd
from support.servers import kill_server, point_at_new_server, start_server
from support.stores import new_store, one_finished_of_each, runs_of


@pytest.mark.e2e
def test_study_survives_a_tracking_server_restart(tmp_path, monkeypatch, migrated_store):
    store = new_store(migrated_store, tmp_path / "server.db")
    port, server = point_at_new_server(store, tmp_path, monkeypatch)
    try:
        study_proc = subprocess.Popen(
            study_cmd("0.001,0.002", "--epochs", "10", "--patience", "0"),
            stdout=open(tmp_path / "log", "w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"},
        )  # retry sooner
        client = mlflow.tracking.MlflowClient()
        deadline = time.time() + 300
        while time.time() < deadline and study_proc.poll() is None:  # mid-training: an epoch logged
            time.sleep(0.5)
            running = (
                [r for r in runs_of("train") if r.info.status == "RUNNING"]
                if mlflow.get_experiment_by_name("lrnoise")
                else []
            )
            if running and client.get_metric_history(running[0].info.run_id, "loss"):
                break
        assert study_proc.poll() is None, open(tmp_path / "log").read()[-3000:]  # still training
        kill_server(server)  # the server goes away for a few seconds: MLflow's retries ride it out
        time.sleep(5)
        server = start_server(store, port, tmp_path)
        assert study_proc.wait(timeout=900) == 0, open(tmp_path / "log").read()[-3000:]
        one_finished_of_each([0.001, 0.002])
        for run in runs_of("train"):  # nothing lost, nothing logged twice
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == list(range(1, 11))
        assert len(runs_of("study")) == 1
    finally:
        kill_server(server)
        mlflow.set_tracking_uri(None)
