"""leases.py: who owns a run (heartbeats; owners on this host known dead at once), claims, and the ending of
what dead processes left RUNNING."""

import dataclasses
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import mlflow
import pytest

from lrnoise import names
from lrnoise.store import leases, semantics, session

from support.stores import run_statuses

HOST = leases.HOST  # this host as an owner tag names it


def exited_pid() -> int:
    """The pid of a process of this host that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def owner(host: str, pid) -> str:
    """An owner tag as leases writes it: host:pid:random."""
    return f"{host}:{pid}:0123abcd"


def running(owner_tag: str, heartbeat: float | None = None):
    """A RUNNING run as the store returns it, with its owner and heartbeat (now by default) tags."""
    tags = {names.OWNER: owner_tag, names.HEARTBEAT: f"{time.time() if heartbeat is None else heartbeat:.3f}"}
    return SimpleNamespace(info=SimpleNamespace(status="RUNNING"), data=SimpleNamespace(tags=tags))


def test_a_run_whose_owner_exited_on_this_host_is_not_live_despite_a_fresh_heartbeat():
    dead = owner(HOST, exited_pid())
    assert leases.owner_is_dead(dead)
    assert not leases.is_live(running(dead))


def test_an_owner_on_another_host_keeps_its_lease():
    elsewhere = owner(f"not-{HOST}", exited_pid())  # that pid means nothing on another host
    assert not leases.owner_is_dead(elsewhere)
    assert leases.is_live(running(elsewhere))
    assert not leases.is_live(running(elsewhere, heartbeat=time.time() - leases.lease_timeout() - 1))


def test_a_machine_with_the_same_host_name_is_another_host():
    """Cloned machines (or containers given one host name) differ in their kernel's boot id: their pids are not
    this host's, so their owners keep the lease."""
    name, boot, namespace = HOST.split("/")
    twin = owner(f"{name}/{'0' * len(boot)}/{namespace}", exited_pid())
    assert not leases.owner_is_dead(twin) and leases.is_live(running(twin))


def test_an_existing_process_is_live():
    assert not leases.owner_is_dead(leases.owner_id())  # this process, as its own heartbeats name it
    assert leases.owner_id().startswith(f"{HOST}:{os.getpid()}:")
    assert not leases.owner_is_dead(owner(HOST, 1))  # pid 1: alive, another user's when not run as root
    assert leases.is_live(running(owner(HOST, os.getpid())))


@pytest.mark.parametrize(
    "tag", ["", HOST, f"{HOST}:x:0123abcd", f"{HOST}:0:0123abcd", f"{HOST}:-1:0123abcd", f"{HOST}:{2**70}:0123abcd"]
)
def test_a_malformed_owner_keeps_the_lease_rule(tag):
    assert not leases.owner_is_dead(tag)
    assert leases.is_live(running(tag))
    assert not leases.is_live(running(tag, heartbeat=0))


def test_end_dead_runs_ends_only_what_dead_owners_of_this_host_left_running(store, monkeypatch):
    """Dead owners' RUNNING runs: a claim is removed, any other run marked FAILED, and a FAILED training or study
    run is still the one a rerun resumes. Left alone: this process's runs, another host's, one without an owner,
    finished runs, and the entry point's run under `mlflow run`."""
    client = mlflow.tracking.MlflowClient()
    exp = session.ensure_experiment("lrnoise")
    study_params = {"preset": "demo"}
    dead = owner(HOST, exited_pid())

    def make(kind, owner_tag=None, key="k", status="RUNNING"):
        run_id = client.create_run(
            exp, tags={names.KIND: kind, names.CONFIG_KEY: key, **semantics.semantics_tags(kind)}
        ).info.run_id
        if owner_tag is not None:
            client.set_tag(run_id, names.OWNER, owner_tag)
            client.set_tag(run_id, names.HEARTBEAT, f"{time.time():.3f}")
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    train, evaluation, claim = make("train", dead), make("noise_eval", dead), make("claim", dead)
    study_run = make("study", dead, key=names.config_key(study_params))
    held = make("train", key="held")
    leases.hold(held)  # owned by this process
    kept = {
        held: "RUNNING",
        make("train", owner(f"not-{HOST}", exited_pid()), key="k2"): "RUNNING",
        make("train", key="k3"): "RUNNING",
        make("train", dead, key="k4", status="FINISHED"): "FINISHED",
    }
    entry_point = make("study", dead, key="entry")
    monkeypatch.setenv("MLFLOW_RUN_ID", entry_point)
    kept[entry_point] = "RUNNING"
    try:
        assert sorted(leases.end_dead_runs(exp)) == sorted([train, evaluation, claim, study_run])
    finally:
        leases.release(held)
    statuses = run_statuses()
    assert {run_id: statuses[run_id] for run_id in kept} == kept
    assert [statuses[r] for r in (train, evaluation, study_run)] == ["FAILED"] * 3
    assert client.get_run(claim).info.lifecycle_stage == "deleted"
    assert leases.end_dead_runs(exp) == []  # nothing dead is left RUNNING
    assert leases.existing_run(exp, "train", "k").resume == train
    monkeypatch.delenv("MLFLOW_RUN_ID")
    assert leases.start_study_run(exp, study_params) == study_run  # resumed, RUNNING again
    leases.release(study_run)
    assert client.get_run(study_run).info.status == "RUNNING"


def test_the_older_claim_wins_and_a_staked_claim_does_not_wait_again(store, monkeypatch):
    """leases.claimed: of two live claims on one configuration the older wins; a claim staked ahead of time
    (leases.stake) whose settle wait has passed resolves without sleeping, and stays until its owner unstakes
    it; a claim made inside claimed() is removed when the block ends."""
    client = mlflow.tracking.MlflowClient()
    exp = session.ensure_experiment("lrnoise")
    older, younger = leases.stake(exp, "k"), leases.stake(exp, "k")
    waits = []
    settle = leases.settle
    monkeypatch.setattr(leases, "settle", lambda claim: waits.append(claim.settled_at - time.time()) or settle(claim))
    with leases.claimed(exp, "k", staked=younger) as mine:
        assert mine is False  # another owner's older claim is live
    older = dataclasses.replace(older, settled_at=time.time() - 1)  # staked long enough ago
    with leases.claimed(exp, "k", staked=older) as mine:
        assert mine is True
    assert waits[-1] < 0  # nothing left to wait
    assert {client.get_run(c.run_id).info.status for c in (older, younger)} == {"RUNNING"}  # still staked
    with pytest.raises(ValueError, match="not other"):
        with leases.claimed(exp, "other", staked=older):
            pass
    leases.unstake(older)
    leases.unstake(younger)
    assert {client.get_run(c.run_id).info.lifecycle_stage for c in (older, younger)} == {"deleted"}
    with leases.claimed(exp, "k2") as mine:  # its own claim: made, waited for, removed
        assert mine is True and waits[-1] > 0.4
    claims = client.search_runs([exp], f"tags.`{names.KIND}` = 'claim'", run_view_type=3)
    assert [r.info.lifecycle_stage for r in claims] == ["deleted"] * 3


def test_runs_of_other_semantics_are_made_again_unless_any_run_may_be_reused(store):
    """A finished run made under other training semantics (or before runs carried one) is not reused, and an
    unfinished one is not resumed (it is marked FAILED once its owner is gone), unless reuse_any; a run of this
    code's semantics is; a run lrnoise made under other semantics cannot be resumed by hand either."""
    from lrnoise import TRAINING_SEMANTICS
    from lrnoise.config import TrainConfig
    from lrnoise.study.job import Job
    from lrnoise.study.runner import semantics_lines

    client = mlflow.tracking.MlflowClient()
    exp = session.ensure_experiment("lrnoise")
    job = Job(TrainConfig(dataset="digits", model="resnet8", epochs=1), ())
    key = names.config_key(job.train.params())

    def make(status, semantics=None):
        tags = {names.KIND: "train", names.CONFIG_KEY: key}
        if semantics is not None:
            tags[names.SEMANTICS] = str(semantics)
        run_id = client.create_run(exp, tags=tags).info.run_id
        client.set_tag(run_id, names.HEARTBEAT, "0")  # its owner is long gone
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    unversioned = make("FINISHED")
    newer = make("RUNNING", TRAINING_SEMANTICS + 1)
    assert semantics_lines(exp, [job], reuse_any=False) == [
        f"[study] training: 1 configurations made again: their finished runs were made under training semantics "
        f"0 (1), this lrnoise {lrnoise_version()} trains under {TRAINING_SEMANTICS} (--reuse any reuses them)"
    ]
    assert "reused although made under training semantics 0 (1)" in semantics_lines(exp, [job], reuse_any=True)[0]
    found = leases.existing_run(exp, "train", key)
    assert (found.finished, found.resume, found.live) == (None, None, None)  # train anew
    assert run_statuses()[newer] == "FAILED"  # never resumed by this code
    assert leases.existing_run(exp, "train", key, reuse_any=True).finished == unversioned
    with pytest.raises(Exception, match=f"made under train semantics {TRAINING_SEMANTICS + 1}"):
        semantics.check_resumable(client.get_run(newer), "train")
    current = make("FINISHED", TRAINING_SEMANTICS)
    assert leases.existing_run(exp, "train", key).finished == current
    assert semantics_lines(exp, [job], reuse_any=False) == []


def lrnoise_version() -> str:
    from lrnoise import __version__

    return __version__
