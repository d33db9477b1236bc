"""The Ray executor: `ray_actors` runs a study's configurations on a Ray cluster (or a local Ray instance), one
long-lived actor (RayWorker) per training slot the cluster's live nodes hold, each fed by the same Dispatcher as
local workers are, riding out the loss of an actor or a node. ray_request sizes what each training asks for;
ray_runtime_env gives the actors the tracking environment. Ray itself is imported only when a study uses it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

from lrnoise.errors import LrnoiseError
from lrnoise.store import leases, server
from lrnoise.study.dispatch import Dispatcher, from_job_line, job_line
from lrnoise.study.gpus import fits
from lrnoise.study.job import BUSY_POLL, Context, Job, Outcome, run_job
from lrnoise.training.build import SweepCache

RAY_RETRIES = 3  # times a configuration is retried after its Ray worker (or node) was lost
RAY_NO_ROOM_SECONDS = 300.0  # with work left, nothing running and no worker placed this long: fail what is left


class RayWorker:
    """The body of one Ray actor: a long-lived worker process that runs configurations one at a time and keeps
    its traced models between them (build.SweepCache), like a local worker process."""

    def __init__(self, ctx_json: str):
        self.ctx = Context.from_json(ctx_json)
        self.sweep = SweepCache()

    def run(self, line: str) -> str:
        job, claim = from_job_line(line)
        with leases.lease_timeout_of(self.ctx.lease_timeout):
            return run_job(job, self.ctx, claim=claim, sweep=self.sweep).to_json()


@dataclass(frozen=True)
class RayRequest:
    """What each training asks Ray for, resolved against the cluster (ray_request)."""

    cpus: float
    gpus: float
    slots: int  # how many trainings the cluster's live nodes hold at once


def ray_slots(nodes: list[dict], cpus: float, gpus: float) -> int:
    """How many trainings of `cpus` CPUs and `gpus` GPUs the live nodes among `nodes` (ray.nodes() rows) hold."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]

    return sum(int(min(fits(r.get("CPU", 0), cpus), fits(r.get("GPU", 0), gpus))) for r in alive)


def ray_request(nodes: list[dict], preset_workers: int, cpus: float | None, gpus: float | None) -> RayRequest:
    """The resource request of one training on a cluster whose live nodes are `nodes` (ray.nodes() rows):
    GPUs: the user's, else 1 where the cluster has GPUs; CPUs: the user's, else 1 beside a GPU and, on a CPU
    cluster, the smallest node's CPUs / the preset's workers per node (never more trainings than cores).
    Refused in one line when no node can hold one training."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    gpus = gpus if gpus is not None else (1.0 if any(r.get("GPU", 0) > 0 for r in alive) else 0.0)
    if cpus is None:
        smallest = min((r.get("CPU", 0) for r in alive if r.get("CPU", 0) > 0), default=1)
        cpus = 1.0 if gpus else max(1.0, float(int(smallest) // max(1, preset_workers)))
    slots = ray_slots(nodes, cpus, gpus)
    if slots < 1:
        largest = max(alive, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise LrnoiseError(
            f"no Ray node can hold one training ({cpus:g} CPUs, {gpus:g} GPUs): the largest live node has "
            f"{largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs (--cpus-per-training, "
            "--gpus-per-training)"
        )
    return RayRequest(cpus, gpus, slots)


def ray_runtime_env(user: dict, cpus: float) -> dict:
    """The runtime_env of the study's Ray workers: the user's (--ray-runtime-env: pip, py_modules, working_dir,
    ...) with the tracking environment (server.worker_env: URI, credentials, KERAS_BACKEND) and TensorFlow's
    inter-op pool sized to the training's CPUs added to its env_vars (the user's own values win)."""
    env_vars = {"TF_NUM_INTEROP_THREADS": str(max(1, int(cpus))), **server.worker_env(), **user.get("env_vars", {})}
    return {**user, "env_vars": env_vars}


RAY_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 instead of the outward IP


def _start_ray(address: str | None):
    """Ray, connected to the cluster at `address`, or to a local instance of its own when None (never a cluster
    RAY_ADDRESS or `ray start` happens to name: "local"). A local instance stays on loopback: Ray would
    otherwise advertise (and its processes dial) the machine's outward IP, so RAY_LOOPBACK is set while Ray is
    imported and started here (the user's own setting wins), then restored."""
    before = os.environ.get(RAY_LOOPBACK)
    if address is None and before is None and "ray" not in sys.modules:
        os.environ[RAY_LOOPBACK] = "0"
    try:
        try:
            import ray
        except ImportError:
            raise LrnoiseError("--executor ray needs Ray: pip install 'lrnoise[ray]'") from None
        ray.init(address=address or "local", ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
        return ray
    finally:
        if before is None:
            os.environ.pop(RAY_LOOPBACK, None)


def ray_actors(
    dispatcher: Dispatcher,
    ctx: Context,
    on_done,
    address: str | None,
    preset_workers: int,
    cpus_per_training: float | None = None,
    gpus_per_training: float | None = None,
    runtime_env: dict | None = None,
    on_slots=None,
) -> None:
    """Every configuration on a Ray cluster: one actor (RayWorker) per slot the cluster's live nodes hold at the
    request of ray_request, each fed one configuration at a time by the dispatcher, as local workers are. An
    actor lost with its node or process puts its configuration back in the queue (up to RAY_RETRIES times):
    whichever actor takes it resumes its training run from the last checkpoint (leases.existing_run), and a
    replacement actor is started where the cluster has room. A configuration another study holds is put back
    and looked at again after BUSY_POLL seconds. `on_slots(n)` is told how many run at once."""
    ray = _start_ray(address)
    from ray.exceptions import RayError

    try:
        request = ray_request(ray.nodes(), preset_workers, cpus_per_training, gpus_per_training)
        actor_class = ray.remote(num_cpus=request.cpus, num_gpus=request.gpus, max_restarts=0)(RayWorker)
        env = ray_runtime_env(runtime_env or {}, request.cpus)
        print(
            f"[study] ray: {request.slots} trainings at once, {request.cpus:g} CPUs and {request.gpus:g} GPUs each",
            flush=True,
        )
        if on_slots is not None:
            on_slots(request.slots)

        def new_actor():
            actor = actor_class.options(runtime_env=env).remote(ctx.to_json())
            return actor, actor.__ray_ready__.remote()

        starting, running = {}, {}  # ready ref -> (slot, actor); job ref -> (slot, actor, job, claim, was_idle)
        for slot in range(request.slots):
            actor, ready = new_actor()
            starting[ready] = (slot, actor)
        lost: dict[Job, int] = {}
        later: list[tuple[float, Job]] = []  # busy configurations and when to look at them again
        idle: list[tuple[int, object]] = []  # placed actors that found the queue empty
        moved_at = time.monotonic()  # the last sign of progress: an actor placed or started, a configuration ended
        start_error = ""  # why the last actor could not start (a node without lrnoise, a bad runtime env, ...)

        def feed(slot, actor, was_idle=False) -> None:
            taken = dispatcher.take(slot)
            if taken is None:
                idle.append((slot, actor))
                return
            job, claim = taken
            running[actor.run.remote(job_line(job, claim))] = (slot, actor, job, claim, was_idle)

        def feed_idle() -> None:
            while idle and dispatcher.queue:
                feed(*idle.pop(), was_idle=True)

        while True:
            now = time.monotonic()
            for due in [item for item in later if item[0] <= now]:
                later.remove(due)
                dispatcher.put_back(due[1])
            feed_idle()
            if not running and not later and not dispatcher.queue:
                break  # every configuration ended (actors still being placed are not needed)
            if not running and not later and (not starting or now - moved_at > RAY_NO_ROOM_SECONDS):
                why = f": {start_error}" if start_error else " (no node had room for it)"
                for job in dispatcher.drain():  # no worker left, or none placed for long
                    on_done(Outcome(job, "failed", error=f"no Ray worker could be placed for it{why}"))
                break
            waits = [t - now for t, _ in later]
            if starting and not running:
                waits.append(moved_at + RAY_NO_ROOM_SECONDS - now)
            if not running and not starting:  # only busy configurations left: ray.wait([]) would not wait
                time.sleep(max(0.0, min(waits)))
                continue
            ready, _ = ray.wait([*running, *starting], num_returns=1, timeout=max(0.0, min(waits)) if waits else None)
            if not ready:
                continue
            ref = ready[0]
            if ref in starting:
                slot, actor = starting.pop(ref)
                try:
                    ray.get(ref)
                except RayError as exc:  # its node went away, or its runtime env could not be set up there
                    start_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}" if str(exc) else ""
                    print(f"[study] a Ray worker could not start ({start_error or type(exc).__name__})", flush=True)
                    continue
                moved_at = time.monotonic()
                feed(slot, actor)
                continue
            slot, actor, job, claim, was_idle = running.pop(ref)
            dispatcher.finish(claim)
            moved_at = time.monotonic()
            try:
                outcome = Outcome(job, **json.loads(ray.get(ref)))
            except RayError as exc:  # the actor died: its node or its process was lost
                if not was_idle:  # an actor that died while idle is no fault of this configuration
                    lost[job] = lost.get(job, 0) + 1
                why = type(exc).__name__
                if lost.get(job, 0) > RAY_RETRIES:
                    on_done(Outcome(job, "failed", error=f"its Ray worker was lost {lost[job]} times ({why})"))
                else:
                    print(f"[study] {job.name}: its Ray worker was lost ({why}); retrying it", flush=True)
                    dispatcher.put_back(job)
                room = ray_slots(ray.nodes(), request.cpus, request.gpus)
                if len(running) + len(starting) + len(idle) < room:  # a process lost, not its node: replace it
                    actor, ready_ref = new_actor()
                    starting[ready_ref] = (slot, actor)
                continue
            if outcome.status == "busy":  # another live study holds it: back in the queue after BUSY_POLL
                later.append((time.monotonic() + BUSY_POLL, job))
            else:
                on_done(outcome)
            feed(slot, actor)
    finally:
        ray.shutdown()
