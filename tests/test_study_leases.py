"""Studies that must not lose or duplicate a run: several at once (claims, leases), a study killed and started
again. (A tracking server that goes away and comes back: test_study_outage.py.)"""

import os
import signal
import subprocess
import time

import mlflow
import pytest

from lrnoise import names
from lrnoise.store import server as tracking_server  # `server` is the fixture below
from lrnoise.store import session

from support.commands import study_cmd

# ---------------------------------------------------------------- two studies at once (leases and claims)
from support.stores import new_store, one_finished_of_each, run_statuses, runs_of


# ---------------------------------------------------------------- two studies at once (leases and claims)
@pytest.fixture
def server(tmp_path, monkeypatch, migrated_store):
    """A real `mlflow server` on 127.0.0.1 over a sqlite store (several writers at once need one)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    with tracking_server.serve(new_store(migrated_store, tmp_path / "server.db")) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        yield uri
    mlflow.set_tracking_uri(None)


@pytest.mark.e2e
def test_two_studies_at_once_train_each_configuration_once(server, tmp_path):
    # two grids started at the same moment, the second the first and one more: both start on the same
    # configuration, share every one of the first grid's, and the second has one of its own
    procs = [
        subprocess.Popen(
            study_cmd(lrs, "--epochs", "2"), stdout=open(tmp_path / f"log{i}", "w"), stderr=subprocess.STDOUT
        )
        for i, lrs in enumerate(("0.001,0.002", "0.001,0.002,0.003"))
    ]
    codes = [p.wait(timeout=900) for p in procs]
    assert codes == [0, 0], [open(tmp_path / f"log{i}").read()[-2000:] for i in range(2)]
    one_finished_of_each([0.001, 0.002, 0.003])
    assert not [r for r in runs_of("claim")]  # claims are bookkeeping: none left behind


@pytest.mark.e2e
def test_a_study_waiting_on_a_killed_study_takes_its_configuration_over(server, tmp_path):
    """The first study is stopped (SIGSTOP) once its training has logged an epoch: alive, its claim and heartbeat
    fresh, so the second study meets a live claim and waits. Then the first is killed; on this host its runs are
    free at once (leases.owner_is_dead), not after the lease: the second study takes them over at its next look."""
    client = mlflow.tracking.MlflowClient()
    first, killed = _first_study_mid_training(tmp_path)
    os.killpg(first.pid, signal.SIGSTOP)
    second = subprocess.Popen(TAKEOVER, stdout=open(tmp_path / "second", "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300  # the second study's start on two busy cores (the suite's other worker) is slow
    while time.time() < deadline and "held by another live study" not in open(tmp_path / "second").read():
        time.sleep(0.5)  # the second study meets the first one's live claim and waits
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert second.wait(timeout=600) == 0, open(tmp_path / "second").read()[-3000:]
    log = open(tmp_path / "second").read()
    assert "held by another live study" in log and "train resumed" in log
    assert mlflow.get_run(killed).info.status == "FINISHED"  # the same run, taken over and finished
    assert sorted(m.step for m in client.get_metric_history(killed, "loss")) == list(range(1, EPOCHS + 1))
    one_finished_of_each([0.001])


@pytest.mark.e2e
def test_a_study_killed_on_this_host_is_resumed_at_once_by_the_next(store, tmp_path):
    """A study killed with -9 leaves its study, claim and training runs RUNNING with fresh heartbeats. The next
    study on this host sees that their owner is gone: despite an hour's lease it waits for nothing, resumes the
    training run in place and leaves nothing RUNNING."""
    client = mlflow.tracking.MlflowClient()
    session.ensure_experiment("lrnoise")  # the store exists before two processes open it
    first, killed = _first_study_mid_training(tmp_path)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert mlflow.get_run(killed).info.status == "RUNNING"  # what the kill left behind
    second = subprocess.run(
        TAKEOVER, stdout=open(tmp_path / "second", "w"), stderr=subprocess.STDOUT, timeout=600
    )  # a wait for the lease would last an hour
    log = open(tmp_path / "second").read()
    assert second.returncode == 0, log[-3000:]
    assert "held by another live study" not in log and "train resumed" in log
    assert "runs left RUNNING by dead processes on this host" in log
    assert mlflow.get_run(killed).info.status == "FINISHED"
    assert int(mlflow.get_run(killed).data.tags[names.RESUMED_AFTER_EPOCH]) >= 1  # from its checkpoint
    assert sorted(m.step for m in client.get_metric_history(killed, "loss")) == list(range(1, EPOCHS + 1))
    assert len(runs_of("study")) == 1  # the killed study's run, resumed
    assert set(run_statuses().values()) == {"FINISHED"}  # nothing RUNNING, nothing FAILED left over
    one_finished_of_each([0.001])


EPOCHS = 20  # a ResNet8's epoch is short: the first study is still training when the test looks
TAKEOVER = study_cmd(  # a checkpoint every epoch: the takeover continues from it
    "0.001", "--epochs", str(EPOCHS), "--patience", "0", "--lease-timeout", "3600", "--checkpoint-every", "0"
)


def _first_study_mid_training(tmp_path) -> tuple[subprocess.Popen, str]:
    """TAKEOVER's study started in a process group of its own (log: tmp_path / "first"), returned once its
    training run has logged an epoch: (the process, the training run's id)."""
    first = subprocess.Popen(
        TAKEOVER, stdout=open(tmp_path / "first", "w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    return first, _training_after_an_epoch(tmp_path / "first")


def _training_after_an_epoch(log) -> str:
    """The id of the RUNNING training run once it has logged an epoch and uploaded that epoch's checkpoint (an
    epoch's metrics are written before its checkpoint: a kill between the two resumes from the start), within
    300 s; `log`: its study's log."""
    client = mlflow.tracking.MlflowClient()
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.5)
        for run in runs_of("train") if mlflow.get_experiment_by_name("lrnoise") else []:
            run_id = run.info.run_id
            if run.info.status == "RUNNING" and client.get_metric_history(run_id, "loss"):
                if any(f.path.endswith("state.json") for f in client.list_artifacts(run_id, names.CHECKPOINT_DIR)):
                    return run_id
    raise AssertionError(open(log).read()[-2000:])
