"""A run's lifecycle and "already ran?": runs started, kept alive and ended (heartbeats, owners known dead), the
one rule that decides whether a configuration is reused, resumed or left to its owner, the study's parent run,
and race-free claims on a configuration between studies. Built on session, semantics, run_logging and lookup;
none of them imports this module."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import mlflow
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException

from lrnoise import names
from lrnoise.errors import LrnoiseError
from lrnoise.store import lookup, run_logging, semantics, session

DEFAULT_LEASE_TIMEOUT = 300.0  # seconds without a heartbeat after which a run's owner is gone: > a GPU epoch
HEARTBEAT_EVERY = 60.0  # seconds between heartbeats (at most; training also beats after every epoch)
CLAIM_SETTLE = 0.5  # seconds a new claim waits before it looks for older ones (clock skew + store latency)


def _this_host() -> str | None:
    """This host as an owner tag names it: host name, kernel boot id and PID namespace. Two machines may share a
    host name (cloned VMs, containers given one), never a boot id; two containers may share a kernel, never a PID
    namespace. None where the last two cannot be read: then no owner is ever known dead here (leases only)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:12]
        namespace = "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/pidns{namespace}"


HOST = _this_host()
_OWNER = f"{HOST or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # names.OWNER: host:pid:random
_held: set[str] = set()  # runs this process keeps alive
_beating = threading.Event()


_lease_timeout = DEFAULT_LEASE_TIMEOUT  # this process's, set for a block by lease_timeout_of


def lease_timeout() -> float:
    return _lease_timeout


@contextlib.contextmanager
def lease_timeout_of(seconds: float):
    """Leases judged (and heartbeats paced) with `seconds` inside the block, the previous value after it: a
    study's --lease-timeout holds for that study only."""
    global _lease_timeout
    if not seconds > 0:
        raise LrnoiseError(f"lease timeout must be > 0 seconds, got {seconds}")
    previous, _lease_timeout = _lease_timeout, float(seconds)
    try:
        yield
    finally:
        _lease_timeout = previous


def owner_id() -> str:
    return _OWNER


def owner_is_dead(owner: str) -> bool:
    """True when `owner` (a names.OWNER tag, host:pid:random) is a process of this host that no longer exists:
    its runs need not wait out the lease. False for an existing process (another user's too), an owner on another
    host, a tag that does not parse, and on Windows (where os.kill ends the process): those keep the lease rule."""
    try:
        host, pid, _ = owner.rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return False
    if pid <= 0 or HOST is None or host != HOST or sys.platform == "win32":
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: it exists; OverflowError: not a pid of this system
        return False
    return False


def is_live(run) -> bool:
    """An unfinished run whose owner beat within the lease timeout and is not known dead (owner_is_dead)."""
    if run.info.status != "RUNNING" or owner_is_dead(run.data.tags.get(names.OWNER, "")):
        return False
    try:
        return time.time() - float(run.data.tags.get(names.HEARTBEAT, "0")) < lease_timeout()
    except ValueError:
        return False


def end_dead_runs(experiment_id: str) -> list[str]:
    """Ends the experiment's RUNNING runs whose owner is known dead (owner_is_dead), so that nothing a killed
    process left stays RUNNING: a claim is dropped (bookkeeping), any other run marked FAILED (a FAILED training or
    study run is still resumed, a noise evaluation redone: existing_run). Left alone: runs of live owners,
    of owners on other hosts (their lease decides), without an owner, and the entry point's run under `mlflow run`
    (MLFLOW_RUN_ID: this process's). Returns the ended runs' ids."""
    entry_point = os.environ.get("MLFLOW_RUN_ID")
    running = session.search_runs([experiment_id], "attributes.status = 'RUNNING'", finished_only=False)
    dead = [r for r in running if r.info.run_id != entry_point and owner_is_dead(r.data.tags.get(names.OWNER, ""))]
    for run in dead:
        now = session.get_run(run.info.run_id)  # read again: a live process may have taken it over meanwhile
        if now.info.status != "RUNNING" or now.data.tags.get(names.OWNER) != run.data.tags.get(names.OWNER):
            continue
        if run.data.tags.get(names.KIND) == "claim":
            _drop(run.info.run_id)
        else:
            run_logging.mark_failed(run.info.run_id)
    return [r.info.run_id for r in dead]


def beat(run_id: str, metrics: dict | None = None, step: int = 0) -> None:
    """Marks `run_id` alive and owned by this process now; `metrics` (at `step`) go in the same write."""
    now = time.time()
    session.client().log_batch(
        run_id,
        metrics=run_logging.metric_entities(metrics or {}, step, now),
        tags=[mlflow.entities.RunTag(names.HEARTBEAT, f"{now:.3f}"), mlflow.entities.RunTag(names.OWNER, _OWNER)],
    )


def hold(run_id: str) -> None:
    """Keeps `run_id` alive (a heartbeat now and every HEARTBEAT_EVERY s or lease/3) until release()."""
    beat(run_id)
    _held.add(run_id)
    if not _beating.is_set():
        _beating.set()
        threading.Thread(target=_heartbeats, name="lrnoise-heartbeat", daemon=True).start()


def release(run_id: str) -> None:
    _held.discard(run_id)


def _heartbeats() -> None:
    while True:
        time.sleep(min(HEARTBEAT_EVERY, lease_timeout() / 3))
        for run_id in list(_held):
            try:
                beat(run_id)
            except Exception:  # a server blip: the next beat retries; the lease timeout is several beats long
                pass


# ---------------------------------------------------------------- runs: start, keep alive, end; already ran?
@contextlib.contextmanager
def run(
    experiment: str,
    kind: str,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    tags: dict | None = None,
    run_name: str | None = None,
):
    """Starts (or resumes) a run and always ends it: FINISHED, FAILED on error, KILLED on Ctrl-C.

    Inside `mlflow run` the entry point's run (MLFLOW_RUN_ID) is resumed, so there is no second run.
    """
    run_id = run_id or os.environ.pop("MLFLOW_RUN_ID", None)
    all_tags = {names.KIND: kind, **semantics.semantics_tags(kind), **(tags or {})}
    if run_id:  # resumed (or `mlflow run`'s own run): the parent link is MLflow's tag, set like the others
        semantics.check_resumable(session.get_run(run_id), kind)
        active = mlflow.start_run(run_id=run_id)
    else:  # created with its tags and its parent: one request
        active = mlflow.start_run(
            experiment_id=session.ensure_experiment(experiment),
            run_name=run_name,
            tags=all_tags,
            parent_run_id=parent_run_id,
        )
    try:
        if run_id:
            mlflow.set_tags({**all_tags, **({names.PARENT_RUN_ID: parent_run_id} if parent_run_id else {})})
        hold(active.info.run_id)  # a heartbeat until the run ends: other studies leave it alone
        yield active
    except KeyboardInterrupt:
        _end(active.info.run_id, RunStatus.KILLED)
        raise
    except BaseException:
        _end(active.info.run_id, RunStatus.FAILED)
        raise
    else:
        _end(active.info.run_id, RunStatus.FINISHED)


def _end(run_id: str, status) -> None:
    release(run_id)
    mlflow.end_run(RunStatus.to_string(status))


@dataclasses.dataclass
class Existing:
    """What the store already holds of one configuration (see existing_run)."""

    finished: str | None = None  # the newest FINISHED run: reuse it
    resume: str | None = None  # else the newest unfinished run whose owner is gone: resume it
    live: str | None = None  # else an unfinished run another process is still working on: leave it


def existing_run(
    experiment_id: str,
    kind: str,
    key: str,
    source_run_id: str | None = None,
    resumable: bool = True,
    reuse_any: bool = False,
) -> Existing:
    """The one rule for "already ran?": reuse the newest FINISHED run made under this code's semantics (with
    `reuse_any`, else the newest FINISHED run of any semantics); else leave a live run of this code's semantics
    (fresh heartbeat) to its owner; else resume the newest unfinished one (when the kind is resumable). Every
    other unfinished run whose owner is gone is marked FAILED, so exactly one run of a configuration and
    semantics can end FINISHED. Runs of other semantics are never resumed (semantics.check_resumable)."""
    runs = lookup.runs_with_config(experiment_id, kind, key, source_run_id)
    current = semantics.SEMANTICS_OF.get(kind)
    same = [r for r in runs if current is None or semantics.run_semantics(r) == current]
    finished = [r.info.run_id for r in same if r.info.status == "FINISHED"]
    if not finished and reuse_any:
        finished = [r.info.run_id for r in runs if r.info.status == "FINISHED"]
    unfinished = [r for r in runs if r.info.status != "FINISHED"]
    dead = [r.info.run_id for r in unfinished if not is_live(r)]
    live = [r.info.run_id for r in unfinished if r in same and r.info.run_id not in dead]
    found = Existing(finished[0] if finished else None)
    if not finished and live:
        found.live = live[0]
    elif not finished and resumable and (mine := [r.info.run_id for r in same if r.info.run_id in dead]):
        found.resume = mine[0]
    for stale in dead:
        if stale != found.resume:
            run_logging.mark_failed(stale)
    return found


def start_study_run(experiment_id: str, params: dict) -> str:
    """The study's parent run: `mlflow run`'s own run if inside one, else an unfinished study run with the
    same configuration (resumed after a crash), else a new one. Kept out of the fluent run stack so that
    training and noise-eval runs can start beside it."""
    c = session.client()
    key = names.config_key(params)
    run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    if run_id is None:
        run_id = existing_run(experiment_id, "study", key).resume  # a live twin study keeps its own run
    if run_id is None:
        run_id = c.create_run(experiment_id, run_name=f"study-{params['preset']}").info.run_id
    else:
        c.update_run(run_id, status="RUNNING")
    hold(run_id)
    run_logging.write_params(run_id, params, {names.KIND: "study", names.CONFIG_KEY: key}, strict=False)
    return run_id


def end_study_run(run_id: str, counts: tuple, ok: bool) -> None:
    """Closes the study run with its counts (configurations, failed, trained, reused, did_not_learn); a twin
    study run whose owner died meanwhile (its configurations taken over by this one) is marked FAILED."""
    run_logging.log_metrics(dict(zip(names.STUDY_METRICS, counts)), run_id=run_id)
    run = session.get_run(run_id)
    existing_run(run.info.experiment_id, "study", run.data.tags[names.CONFIG_KEY], resumable=False)
    release(run_id)
    session.client().set_terminated(run_id, "FINISHED" if ok else "FAILED")


# ---------------------------------------------------------------- claims
@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim run on one configuration, created (and kept alive) by stake(); resolved by claimed()."""

    run_id: str
    key: str  # the configuration key it claims
    settled_at: float  # time.time() after which it may look for older claims (CLAIM_SETTLE after its creation)


def stake(experiment_id: str, key: str) -> Claim:
    """Creates a claim on configuration `key` and keeps it alive (heartbeats) until unstake(). Staked ahead of
    time (a study stakes the configuration it runs next while the current one still runs), its settle wait has
    passed by the time claimed() resolves it. Whoever stakes a claim unstakes it."""
    run_id = (
        session.client()
        .create_run(experiment_id, run_name=f"claim-{key[:8]}", tags={names.KIND: "claim", names.CONFIG_KEY: key})
        .info.run_id
    )
    claim = Claim(run_id, key, time.time() + CLAIM_SETTLE)
    hold(run_id)
    return claim


def settle(claim: Claim) -> None:
    """Waits until `claim` may look for older claims (no wait for one staked long enough ago)."""
    time.sleep(max(0.0, claim.settled_at - time.time()))


def unstake(claim: Claim) -> None:
    """Ends and removes a claim (it was bookkeeping, not a result)."""
    release(claim.run_id)
    _drop(claim.run_id)


@contextlib.contextmanager
def claimed(experiment_id: str, key: str, meanwhile=None, staked: Claim | None = None):
    """Yields True when this process won the right to work on configuration `key`, False when a live claim
    of another process is older. Race-free between processes: every contender creates a claim run, waits
    CLAIM_SETTLE, then looks at all live claims of the key; the oldest (start time, then run id) wins, the
    others withdraw. A claim whose owner died is ignored (and removed): at once when the owner was on this host,
    else after the lease timeout without a heartbeat. `staked`: a claim on `key` made earlier by stake() (its
    owner unstakes it); without it a claim is made here and removed when the block ends. `meanwhile()`, if
    given, runs during the wait (local preparation that writes nothing to the store); the wait is never shorter
    for it."""
    if staked is not None and staked.key != key:
        raise ValueError(f"claim {staked.run_id} is on configuration {staked.key}, not {key}")
    claim = staked or stake(experiment_id, key)
    try:
        if meanwhile is not None:
            meanwhile()
        settle(claim)
        claims = lookup.runs_with_config(experiment_id, "claim", key)
        live = [r for r in claims if is_live(r)]  # each owner looked at once (a pid check for this host's)
        stale = [r.info.run_id for r in claims if r not in live]
        winner = min(live, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id if live else claim.run_id
        won = winner == claim.run_id
        if won:
            for run_id in stale:
                _drop(run_id)
        yield won
    finally:
        if staked is None:
            unstake(claim)


def _drop(run_id: str) -> None:
    """Ends and deletes a claim run (it was bookkeeping, not a result)."""
    try:
        session.client().set_terminated(run_id, "FINISHED")
        session.client().delete_run(run_id)
    except MlflowException:
        pass
