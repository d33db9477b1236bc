"""A study on a real Ray cluster of two nodes on this machine (tests/ray_two_nodes.py: a head and a second node,
separate raylets, both on 127.0.0.1), the second node killed mid-training: the study rides it out."""

import os
import subprocess
import sys
import time

import mlflow
import pytest

from lrnoise import names

from support import ROOT
from support.servers import kill_server, point_at_new_server
from support.stores import new_store, run_statuses, runs_of

pytestmark = pytest.mark.deployment  # its own CI step (.ci/run), not the README's test command

pytest.importorskip("ray")
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray keeps 127.0.0.1 as it is (ray_two_nodes.py)
LRS = (0.001, 0.002, 0.003, 0.004)
EPOCHS = 8


@pytest.mark.e2e
def test_a_study_on_two_ray_nodes_rides_out_the_loss_of_one(tmp_path, monkeypatch, migrated_store):
    _, server = point_at_new_server(new_store(migrated_store, tmp_path / "server.db"), tmp_path, monkeypatch)
    cluster = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "support" / "ray_two_nodes.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **LOOPBACK},
    )
    study = None
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        study = subprocess.Popen(
            [sys.executable, "-m", "lrnoise.cli", "study", "--executor", "ray", "--ray-address", address]
            + ["--cpus-per-training", "1", "--lrs", ",".join(map(str, LRS)), "--epochs", str(EPOCHS)]
            + "--models resnet8 --optimizers adam --seeds 0 --trials 1 --etas 0.1 --noise additive --patience 0"
            " --batch-size 128 --grad-noise-batches 0 --checkpoint-every 0 --no-report".split(),
            stdout=open(tmp_path / "log", "w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **LOOPBACK},
        )
        client = mlflow.tracking.MlflowClient()
        deadline = time.time() + 300
        while time.time() < deadline and study.poll() is None:  # both nodes training, a checkpoint saved by each
            time.sleep(0.5)
            running = [r for r in runs_of("train") if r.info.status == "RUNNING"] if _experiment() else []
            if len(running) == 2 and all(len(client.get_metric_history(r.info.run_id, "loss")) >= 2 for r in running):
                break
        assert study.poll() is None, open(tmp_path / "log").read()[-3000:]
        cluster.stdin.write("kill\n")  # the second node's raylet and workers, killed
        cluster.stdin.flush()
        assert cluster.stdout.readline().strip() == "killed"
        assert study.wait(timeout=600) == 0, open(tmp_path / "log").read()[-3000:]
        log = open(tmp_path / "log").read()
        assert "[study] ray: 2 trainings at once, 1 CPUs and 0 GPUs each" in log
        assert "its Ray worker was lost" in log and "train resumed" in log
        trains = [r for r in runs_of("train") if r.info.status == "FINISHED"]
        assert sorted(float(r.data.params["lr"]) for r in trains) == list(LRS)  # exactly one FINISHED each
        evals = [r for r in runs_of("noise_eval") if r.info.status == "FINISHED"]
        assert sorted(r.data.tags["source_run_id"] for r in evals) == sorted(r.info.run_id for r in trains)
        resumed = [r for r in trains if names.RESUMED_AFTER_EPOCH in r.data.tags]
        assert len(resumed) == 1 and int(resumed[0].data.tags[names.RESUMED_AFTER_EPOCH]) >= 1  # its checkpoint
        steps = sorted(m.step for m in client.get_metric_history(resumed[0].info.run_id, "loss"))
        assert steps == list(range(1, EPOCHS + 1))  # every epoch logged once
        assert "RUNNING" not in run_statuses().values()
        assert not runs_of("claim")
    finally:
        if study is not None and study.poll() is None:
            study.kill()
        cluster.communicate("stop\n", timeout=120)
        kill_server(server)
        mlflow.set_tracking_uri(None)


def _experiment():
    return mlflow.get_experiment_by_name("lrnoise")
