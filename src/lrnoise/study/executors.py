"""Where a study's configurations run: one configuration's work in any process (run_job), and the executors
that run many (this process, local worker processes, Ray actors). What a study plans is study.py's.

A configuration (Job) is a training and its noise evaluations. run_job claims it (leases), reuses, resumes or
trains it, then evaluates it under each noise configuration; it never raises. Executors: `sequential` runs one
configuration at a time in this process; `local_workers` N at once in long-lived worker processes (each given
its GPUs when there are GPUs) fed by a Dispatcher; `ray_actors` as many at once as a Ray cluster holds, one
long-lived actor per slot fed by the same Dispatcher, riding out the loss of a node.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

from lrnoise import names
from lrnoise.config import Execution, TrainConfig
from lrnoise.errors import LrnoiseError
from lrnoise.noise.evaluation import noise_eval
from lrnoise.noise.injection import NoiseConfig
from lrnoise.store import leases, server, tracking
from lrnoise.training.build import SweepCache
from lrnoise.training.train import train


@dataclass(frozen=True)
class Job:
    """One configuration: a training and its noise evaluations (one per noise configuration)."""

    train: TrainConfig
    noise: tuple[NoiseConfig, ...]

    @property
    def name(self) -> str:
        t = self.train
        noisy = f"/train_noise={t.train_noise:g}" if t.train_noise else ""
        return f"{t.dataset}/{t.model}/{t.optimizer}/lr={t.lr:g}/B={t.batch_size}{noisy}/seed={t.seed}"

    def to_json(self) -> str:
        """For a process boundary (a worker process's argv)."""
        return json.dumps({"train": self.train.params(), "noise": [c.to_dict() for c in self.noise]})

    @classmethod
    def from_json(cls, text: str) -> Job:
        spec = json.loads(text)
        return cls(TrainConfig(**spec["train"]), tuple(NoiseConfig.from_dict(c) for c in spec["noise"]))


@dataclass
class Outcome:
    job: Job
    status: str  # ok | failed | busy (another study holds it: retried later)
    train_run_id: str | None = None
    eval_run_ids: list = field(default_factory=list)
    trained: str = ""  # new | resumed | reused
    evaluated: str = ""  # new | reused | mixed | skipped (a model that did not learn)
    learned: bool = True
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                k: getattr(self, k)
                for k in (
                    "status",
                    "train_run_id",
                    "eval_run_ids",
                    "trained",
                    "evaluated",
                    "learned",
                    "seconds",
                    "error",
                )
            }
        )


@dataclass(frozen=True)
class Context:
    """What every configuration of one study shares: the experiment and the study run its runs go under, the
    data folder, how each training runs (Execution), the lease timeout, and which finished runs are reused
    (config.REUSE). Crosses process boundaries as JSON."""

    experiment: str
    parent_run_id: str | None = None
    data_dir: str | None = None
    execution: Execution = Execution()
    lease_timeout: float = leases.DEFAULT_LEASE_TIMEOUT
    reuse: str = "same"

    @property
    def reuse_any(self) -> bool:
        return self.reuse == "any"

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "execution": self.execution.params()})

    @classmethod
    def from_json(cls, text: str) -> Context:
        values = json.loads(text)
        return cls(**{**values, "execution": Execution(**values["execution"])})


# ---------------------------------------------------------------- one configuration (any process)
def run_job(job: Job, ctx: Context, claim: leases.Claim | None = None, sweep: SweepCache | None = None) -> Outcome:
    """Trains (or reuses / resumes) and noise-evaluates (or reuses) one configuration. Never raises.
    `claim`: the configuration's claim, staked by the study (Dispatcher); without it run_job claims it itself.
    `sweep`: the models this process keeps between configurations (build.SweepCache), if any.

    A model that did not learn is a result (its lr is too high), not a failure: it is not noise-evaluated.
    A configuration another live study holds comes back with status "busy" (run_study retries it later)."""
    started = time.perf_counter()
    outcome = Outcome(job, "ok")
    try:
        exp_id = tracking.ensure_experiment(ctx.experiment)
        key = names.config_key(job.train.params())
        with leases.claimed(
            exp_id, key, meanwhile=lambda: _prepare_if_new(job, ctx, exp_id, key, sweep), staked=claim
        ) as mine:
            if mine:
                _train_and_evaluate(job, ctx, outcome, exp_id, sweep)
            else:  # another study works on it now: come back later and reuse what it made
                outcome.status = "busy"
    except Exception as exc:  # a failed configuration is reported; the grid goes on
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        traceback.print_exc()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _prepare_if_new(job: Job, ctx: Context, exp_id: str, key: str, sweep: SweepCache | None) -> None:
    """While the claim settles: the data, seeded model and stream of a configuration that has no training run
    yet (SweepCache.prepare; a read of the store, no write). One that ran before is reused or resumed: nothing."""
    if sweep is not None and not tracking.runs_with_config(exp_id, "train", key, same_semantics=True):
        sweep.prepare(job.train, ctx.data_dir, ctx.execution)


def _train_and_evaluate(job: Job, ctx: Context, outcome: Outcome, exp_id: str, sweep: SweepCache | None) -> None:
    """The configuration's work, under its claim: reuse / resume / train, then each noise evaluation."""
    found = leases.existing_run(exp_id, "train", names.config_key(job.train.params()), reuse_any=ctx.reuse_any)
    trained = None  # this process's own training: its model and data are reused by the evaluations
    if found.live:  # a process that lost its claim (lease timeout) but still beats: leave it
        outcome.status = "busy"
        return
    if found.finished:
        outcome.train_run_id, outcome.trained = found.finished, "reused"
    else:
        result = train(
            job.train,
            data_dir=ctx.data_dir,
            experiment=ctx.experiment,
            resume=found.resume,
            parent_run_id=ctx.parent_run_id,
            execution=ctx.execution,
            sweep=sweep,
        )
        outcome.train_run_id, outcome.trained = result.run_id, "resumed" if found.resume else "new"
        trained = result
    outcome.learned = tracking.learned(tracking.get_run(outcome.train_run_id))
    if not outcome.learned:
        outcome.evaluated = "skipped"
        return
    evaluated = []
    for config in job.noise:
        done = leases.existing_run(
            exp_id,
            "noise_eval",
            config.run_key,
            source_run_id=outcome.train_run_id,
            resumable=False,
            reuse_any=ctx.reuse_any,
        ).finished
        if done:
            outcome.eval_run_ids.append(done)
            evaluated.append("reused")
        else:
            eval_run_id, _ = noise_eval(
                config,
                run_id=outcome.train_run_id,
                data_dir=ctx.data_dir,
                experiment=ctx.experiment,
                model=trained.model if trained else None,
                loaded_data=trained.dataset if trained else None,
                evaluator=trained.evaluator if trained else None,
            )
            outcome.eval_run_ids.append(eval_run_id)
            evaluated.append("new")
    outcome.evaluated = evaluated[0] if len(set(evaluated)) == 1 else "mixed"


OUTCOME_LINE = "LRNOISE_OUTCOME "
BUSY_POLL = 5.0  # seconds between looks at a configuration another live study holds


def _worker_main(argv: list[str]) -> None:
    """`python -m lrnoise.study.executors CONTEXT_JSON`: a local worker process, serving one study for its lifetime.
    It reads one job (JSON) per line on stdin, runs it and prints its outcome line; one process serves many
    configurations, so the traced models of one configuration are reused by the next (build.SweepCache)."""
    ctx = Context.from_json(argv[0])
    sweep = SweepCache()
    with leases.lease_timeout_of(ctx.lease_timeout):
        for line in sys.stdin:
            if line.strip():
                job, claim = _from_job_line(line)
                print(OUTCOME_LINE + run_job(job, ctx, claim=claim, sweep=sweep).to_json(), flush=True)


def _job_line(job: Job, claim: leases.Claim | None) -> str:
    """What the study sends a worker process: the job and the claim the study staked for it (or null)."""
    return json.dumps({**json.loads(job.to_json()), "claim": dataclasses.asdict(claim) if claim else None})


def _from_job_line(line: str) -> tuple[Job, leases.Claim | None]:
    claim = json.loads(line).get("claim")
    return Job.from_json(line), leases.Claim(**claim) if claim else None


# ---------------------------------------------------------------- executors
def trace_group(job: Job) -> tuple:
    """Configurations of one group share one traced training step in a worker: build.SweepCache keeps a model
    per architecture and input normalisation (which follows the seed's validation split), and tracing its step
    again is needed when the optimizer type, the batch shape or the injected training noise changes. So:
    architecture, optimizer type, seed, batch size and train noise."""
    t = job.train
    return t.dataset, t.model, t.optimizer, t.seed, t.shortcut, t.init, t.batch_size, t.train_noise


def choose(queue: list[Job], mine: tuple | None, others: set) -> Job:
    """The job a free worker takes next: one of its own trace group `mine` if any is left (no new tracing), else
    the first of the largest group no other worker is on, else of the largest left."""
    groups: dict[tuple, list[Job]] = {}
    for job in queue:
        groups.setdefault(trace_group(job), []).append(job)
    if mine in groups:
        return groups[mine][0]
    free = [g for g in groups if g not in others] or list(groups)
    return groups[max(free, key=lambda g: len(groups[g]))][0]  # max keeps the first of equals


def next_job(queue: list[Job], mine: tuple | None, others: set) -> Job:
    """choose(...), removed from `queue`."""
    chosen = choose(queue, mine, others)
    queue.remove(chosen)
    return chosen


class Dispatcher:
    """Hands the grid's configurations to the local executor's slots (next_job: a slot keeps to its trace group)
    and, as a slot takes one, stakes the claim of the configuration that slot will take next (leases.stake),
    so that claim's settle wait (leases.CLAIM_SETTLE: 0.5 s) passes while the slot still works instead of
    before its next training. The study process owns the stakes, not a slot: any slot that takes a staked
    configuration gets its claim (the grid's tail never waits on a reservation), a configuration's stake is
    removed when it ends, whatever its worker did, and close() removes the stakes of configurations never run."""

    def __init__(self, jobs: list[Job], experiment_id: str):
        self.queue, self.experiment_id = list(jobs), experiment_id
        self.working: dict[int, tuple] = {}  # slot -> trace group of its current job
        self.stakes: dict[Job, leases.Claim] = {}
        self.lock = threading.Lock()
        self.closed = False  # after close() nothing more is handed out (or staked)

    def take(self, slot: int) -> tuple[Job, leases.Claim | None] | None:
        """(the job slot `slot` runs now, the claim staked for it or None), or None when none is left."""
        with self.lock:
            if not self.queue or self.closed:
                self.working.pop(slot, None)
                return None
            others = {g for s, g in self.working.items() if s != slot}
            job = next_job(self.queue, self.working.get(slot), others)
            self.working[slot] = trace_group(job)
            if self.queue:
                self._stake(choose(self.queue, self.working[slot], others))
            return job, self.stakes.pop(job, None)

    def _stake(self, job: Job) -> None:
        if job in self.stakes:
            return
        try:
            self.stakes[job] = leases.stake(self.experiment_id, names.config_key(job.train.params()))
        except Exception:  # the store failed: the configuration claims for itself when it runs (and reports it)
            pass

    def put_back(self, job: Job) -> None:
        """A configuration to hand out again first (its worker was lost, or another study held it)."""
        with self.lock:
            self.queue.insert(0, job)

    def drain(self) -> list[Job]:
        """The configurations never handed out, removed from the queue."""
        with self.lock:
            left, self.queue = self.queue, []
            return left

    def finish(self, claim: leases.Claim | None) -> None:
        """A configuration taken with `claim` has ended (done, busy, failed or its worker died)."""
        if claim is not None:
            leases.unstake(claim)

    def close(self) -> None:
        """Hands nothing out any more (a slot still running ends after its configuration) and removes the stakes of
        configurations never taken."""
        with self.lock:
            self.closed = True
            for claim in self.stakes.values():
                leases.unstake(claim)
            self.stakes.clear()


def worker_threads(workers: int) -> dict:
    """Environment for each of `workers` CPU worker processes: TensorFlow's inter-op pool (independent ops run
    side by side) gets the worker's share of the cores. The intra-op pool, which splits one op's reductions,
    keeps its size: a different split changes float rounding, and the weights of a configuration must not depend
    on how many workers trained it (measured: 1 intra-op thread instead of 2 moved a digits weight by 0.03 after
    2 epochs; the inter-op setting left every weight bit-identical)."""
    return {"TF_NUM_INTEROP_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}


def sequential(dispatcher: Dispatcher, ctx: Context, on_done, sweep: SweepCache) -> None:
    """One configuration at a time in this process (the next one's claim staked meanwhile: see Dispatcher)."""
    while (taken := dispatcher.take(0)) is not None:
        job, claim = taken
        try:
            on_done(run_job(job, ctx, claim=claim, sweep=sweep))
        finally:
            dispatcher.finish(claim)


def local_workers(
    dispatcher: Dispatcher, workers: int, ctx: Context, on_done, log_dir: str, gpus_per_training: float | None = None
) -> None:
    """N configurations at once, one long-lived worker process per slot (given its GPUs by gpu_assignment when
    there are GPUs, else its share of TensorFlow's inter-op threads) fed one configuration at a time by the
    dispatcher (preferring its own trace group, with the claim staked for it); a worker that dies fails its
    configuration and is replaced."""
    devices = gpu_assignment(workers, gpu_devices(), gpus_per_training)

    def start(slot, log):
        env = dict(os.environ)
        if devices[slot]:
            env["CUDA_VISIBLE_DEVICES"] = devices[slot]
        else:
            if gpu_devices():  # --gpus-per-training 0 on a GPU machine: this worker sees none
                env["CUDA_VISIBLE_DEVICES"] = ""
            env.update({k: env.get(k, v) for k, v in worker_threads(workers).items()})  # the user's setting wins
        return subprocess.Popen(
            [sys.executable, "-m", "lrnoise.study.executors", ctx.to_json()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )

    def run_one(proc, job, claim, log) -> Outcome:
        try:
            proc.stdin.write(_job_line(job, claim) + "\n")
            proc.stdin.flush()
        except OSError:  # the worker died between two configurations
            return Outcome(job, "failed", error=f"worker exited {proc.wait()} (log {log.name})")
        for row in proc.stdout:  # the worker's own output goes to its log; the outcome line ends the job
            if row.startswith(OUTCOME_LINE):
                return Outcome(job, **json.loads(row[len(OUTCOME_LINE) :]))
            log.write(row)
        return Outcome(job, "failed", error=f"worker exited {proc.wait()} (log {log.name})")

    def worker(slot):
        with open(os.path.join(log_dir, f"worker{slot}.log"), "w") as log:
            proc = None
            while (taken := dispatcher.take(slot)) is not None:
                job, claim = taken
                try:
                    if proc is None or proc.poll() is not None:
                        proc = start(slot, log)
                    outcome = run_one(proc, job, claim, log)
                finally:
                    dispatcher.finish(claim)
                on_done(outcome)
            if proc is not None and proc.poll() is None:
                proc.stdin.close()
                proc.wait()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---------------------------------------------------------------- GPUs of local workers
def gpu_devices() -> list[str]:
    """The GPUs this process may use, as CUDA names them: CUDA_VISIBLE_DEVICES's list when it is set (ids or
    UUIDs, in the user's order; empty: none), else every GPU nvidia-smi lists (0 .. n-1)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # CUDA stops at the first invalid id: "-1" (TensorFlow's idiom) means none
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        return list(itertools.takewhile(lambda d: not d.startswith("-"), ids))
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, row in enumerate(r for r in out.splitlines() if r.startswith("GPU "))]


def fits(have: float, need: float) -> float:
    """How many requests of `need` fit in `have` (0.2 GPUs each: 5 per GPU, where float floor division says 4);
    any number when nothing is needed."""
    return math.floor(have / need + 1e-9) if need else math.inf


def gpus_each(devices: list[str], gpus_per_training: float | None) -> float:
    """A training's GPUs: the user's --gpus-per-training, else 1 where there are GPUs and 0 where there are none."""
    return gpus_per_training if gpus_per_training is not None else (1.0 if devices else 0.0)


def gpu_assignment(workers: int, devices: list[str], gpus_per_training: float | None) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each of `workers` local worker processes ('' = no GPU), from the user's `devices`
    in their order: k >= 1 GPUs per training gives each worker its own k; a fraction 1/k lets k workers share
    one GPU; 0 (or no GPU) gives none. More workers than the GPUs allow is refused, not silently shared."""
    per = gpus_each(devices, gpus_per_training)
    if per == 0:
        return [""] * workers
    share = round(1 / per) if per < 1 else 1  # workers per GPU
    each = max(1, int(per))  # GPUs per worker
    room = fits(len(devices), per)
    if not devices:
        raise LrnoiseError(f"--gpus-per-training {per:g} asks for GPUs, but none is visible: 0 trains on the CPU")
    if workers > room:
        listed = ",".join(devices)
        share_hint = ", or --gpus-per-training 0.5 to let two trainings share a GPU" if per >= 1 else ""
        raise LrnoiseError(
            f"{workers} workers at {per:g} GPUs per training need {math.ceil(workers * each / share)} GPUs; "
            f"CUDA_VISIBLE_DEVICES gives {len(devices)} ({listed}): use --workers {max(1, room)}{share_hint}"
        )
    return [",".join(devices[(slot // share) * each : (slot // share + 1) * each]) for slot in range(workers)]


def default_local_workers(preset_workers: int, gpus_per_training: float | None) -> int:
    """Local workers when --workers is not given: one per GPU share where there are GPUs (no GPU left idle),
    else the preset's measured choice, at most one per CPU core."""
    devices = gpu_devices()
    per = gpus_each(devices, gpus_per_training)
    if devices and per > 0:
        return max(1, fits(len(devices), per))
    return max(1, min(preset_workers, os.cpu_count() or 1))


# ---------------------------------------------------------------- Ray: an actor per training slot
RAY_RETRIES = 3  # times a configuration is retried after its Ray worker (or node) was lost
RAY_NO_ROOM_SECONDS = 300.0  # with work left, nothing running and no worker placed this long: fail what is left


class RayWorker:
    """The body of one Ray actor: a long-lived worker process that runs configurations one at a time and keeps
    its traced models between them (build.SweepCache), like a local worker process."""

    def __init__(self, ctx_json: str):
        self.ctx = Context.from_json(ctx_json)
        self.sweep = SweepCache()

    def run(self, job_line: str) -> str:
        job, claim = _from_job_line(job_line)
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
            running[actor.run.remote(_job_line(job, claim))] = (slot, actor, job, claim, was_idle)

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


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
