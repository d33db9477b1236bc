"""Where a study's configurations run: one configuration's work in any process (run_job), and the executors
that run many (this process, local worker processes, Ray tasks). What a study plans is study.py's.

A configuration (Job) is a training and its noise evaluations. run_job claims it (leases), reuses, resumes or
trains it, then evaluates it under each noise configuration; it never raises. Executors: `sequential` runs one
configuration at a time in this process; `local_workers` N at once in long-lived worker processes (each pinned
to a GPU when there are GPUs) fed by a Dispatcher; `ray_tasks` each configuration as a Ray task.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

from lrnoise import leases, server, tracking
from lrnoise.build import SweepCache
from lrnoise.config import Execution, TrainConfig
from lrnoise.errors import LrnoiseError
from lrnoise.noise import NoiseConfig
from lrnoise.noise_eval import noise_eval
from lrnoise.train import train


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
        key = tracking.config_key(job.train.params())
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
    found = leases.existing_run(exp_id, "train", tracking.config_key(job.train.params()), reuse_any=ctx.reuse_any)
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


def _worker_main(argv: list[str]) -> None:
    """`python -m lrnoise.executors CONTEXT_JSON`: a local worker process, serving one study for its lifetime.
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
            self.stakes[job] = leases.stake(self.experiment_id, tracking.config_key(job.train.params()))
        except Exception:  # the store failed: the configuration claims for itself when it runs (and reports it)
            pass

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


def local_workers(dispatcher: Dispatcher, workers: int, ctx: Context, on_done, log_dir: str) -> None:
    """N configurations at once, one long-lived worker process per slot (pinned to one GPU when GPUs exist, else
    given its share of TensorFlow's inter-op threads) fed one configuration at a time by the dispatcher
    (preferring its own trace group, with the claim staked for it); a worker that dies fails its configuration
    and is replaced."""
    gpus = gpu_count()

    def start(slot, log):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
        else:
            env.update({k: env.get(k, v) for k, v in worker_threads(workers).items()})  # the user's setting wins
        return subprocess.Popen(
            [sys.executable, "-m", "lrnoise.executors", ctx.to_json()],
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


_WORKER_SWEEP: list = []  # a Ray worker process's SweepCache, made by its first task


def _run_job_in_worker(job: Job, ctx: Context) -> Outcome:
    """run_job for a Ray task, with the worker process's own SweepCache (a long-lived worker reuses its models)."""
    if not _WORKER_SWEEP:
        _WORKER_SWEEP.append(SweepCache())
    with leases.lease_timeout_of(ctx.lease_timeout):
        return run_job(job, ctx, sweep=_WORKER_SWEEP[0])


def ray_tasks(jobs: list[Job], ctx: Context, on_done, address: str | None) -> None:
    try:
        import ray
    except ImportError:
        raise LrnoiseError("--executor ray needs Ray: pip install 'lrnoise[ray]'") from None
    ray.init(
        address=address, runtime_env={"env_vars": server.worker_env()}, ignore_reinit_error=True, log_to_driver=False
    )
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        task = ray.remote(num_gpus=gpus, max_retries=0)(_run_job_in_worker)
        pending = {task.remote(job, ctx): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                on_done(ray.get(ready[0]))
            except Exception as exc:  # the task itself died (worker crash)
                on_done(Outcome(job, "failed", error=f"ray task failed: {type(exc).__name__}"))
    finally:
        ray.shutdown()


def gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for row in out.splitlines() if row.startswith("GPU "))


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
