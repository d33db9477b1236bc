"""The whole experiment grid as one resumable command: every training, every noise evaluation, the report.

Idempotent: before a configuration runs, the tracking server is asked for a finished training run with the
same configuration key (and a finished noise evaluation with the same noise parameters); what exists is
reused, an interrupted training run is resumed from its last checkpoint in the same run, and a noise
evaluation left unfinished is marked FAILED and redone. Killing the study and starting it again finishes the
grid with exactly one finished run of each.

Executors: `local` runs one configuration at a time in this process, or N at once in worker processes
(`--workers N`, each pinned to a GPU when there are GPUs); `ray` runs each configuration as a Ray task.
Parallel workers need a tracking server: with a sqlite store the study starts `mlflow server` on 127.0.0.1.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field

from lrnoise import data, leases, paper, server, tracking
from lrnoise.errors import LrnoiseError
from lrnoise.noise import NoiseConfig
from lrnoise.config import TrainConfig
from lrnoise.paper import OPTIMIZERS
from lrnoise.reuse import SweepCache

# Figure 3: one (dataset, model, lr) with every optimizer.
FIGURE3_BLOCK = {"datasets": (paper.OPTIMIZER_STUDY["dataset"],), "models": (paper.OPTIMIZER_STUDY["model"],),
                 "optimizers": OPTIMIZERS, "lrs": (paper.OPTIMIZER_STUDY["lr"],)}
# Each preset is a list of blocks; a block's grid is the product of its lists (GRID_FIELDS), a field a block does
# not name takes the preset's own (batch_sizes, train_noises, seeds). Overrides replace a field in every block;
# identical configurations from two blocks run once.
PRESETS = {
    "paper": {
        "blocks": [
            {"datasets": paper.DATASETS, "models": paper.MODELS, "optimizers": ("adam",), "lrs": paper.LRS},
            FIGURE3_BLOCK,
        ],
        "seeds": (0,), "epochs": 200, "patience": 20, "batch_sizes": (128,),  # "trained to convergence"
        "noise": ("additive", "pcm"), "trials": 10,
    },
    "optimizers": {
        "blocks": [FIGURE3_BLOCK],
        "seeds": (0,), "epochs": 200, "patience": 20, "batch_sizes": (128,), "noise": ("additive", "pcm"),
        "trials": 10,
    },
    # Does the lr effect hold over seeds? Digits, ResNet20, Adam, the paper's six lrs x 5 seeds, paper + PCM
    # noise: <= 20 minutes on 2 CPU cores. `--preset paper --seeds 0,1,2` is the same question on CIFAR.
    "seeds": {
        "blocks": [{"datasets": ("digits",), "models": ("resnet20",), "optimizers": ("adam",), "lrs": paper.LRS}],
        "seeds": (0, 1, 2, 3, 4), "epochs": 10, "patience": 4, "batch_sizes": (32,), "noise": ("additive", "pcm"),
        "trials": 5, "workers": 2,
    },
    # The paper's shape on the embedded digits data, sized for minutes on 2 CPU cores: ResNet20 at the six lrs
    # with 3 seeds each (so the lr claim gets a verdict with its interval), plus the five other optimizers at
    # lr 0.00075 with one seed (Figure 3).
    "demo": {
        "blocks": [
            {"datasets": ("digits",), "models": ("resnet20",), "optimizers": ("adam",), "lrs": paper.LRS,
             "seeds": (0, 1, 2)},
            {**FIGURE3_BLOCK, "datasets": ("digits",)},
        ],
        "seeds": (0,), "epochs": 10, "patience": 4, "batch_sizes": (32,), "noise": ("additive", "pcm"), "trials": 5,
        "workers": 2,  # digits' steps are overhead-bound: two at once leave no core idle on a 2-core CPU
    },
    # Is the gradient noise of eq. 2 the mechanism, and does a tuned lr buy what noise-injection training buys?
    # Digits, ResNet20, 3 seeds. (1) lr x batch size for Adam and SGD with momentum; (0.0005, 8) ~ (0.001, 32)
    # and (0.001, 8) ~ (0.002, 32) have equal lr^2 / B. (2) Noise-injection training at the paper's lr beside
    # the lr sweep at the same batch size (the accuracy-robustness frontier of each). Batch 32 is the largest
    # that converges within 10 digits epochs at these lrs (batch 64 left lr 0.0005 at 67 % clean accuracy).
    "mechanism": {
        "blocks": [
            {"datasets": ("digits",), "models": ("resnet20",), "optimizers": ("adam", "momentum"),
             "lrs": (0.0005, 0.001, 0.002), "batch_sizes": (8, 32)},
            {"datasets": ("digits",), "models": ("resnet20",), "optimizers": ("adam",),
             "lrs": (paper.OPTIMIZER_STUDY["lr"],), "batch_sizes": (32,), "train_noises": (0.0, 0.02, 0.05, 0.1)},
        ],
        "seeds": (0, 1, 2), "epochs": 10, "patience": 4, "batch_sizes": (32,), "noise": ("additive",), "trials": 5,
        "workers": 2,
    },
}
GRID_FIELDS = ("datasets", "models", "optimizers", "lrs", "batch_sizes", "train_noises", "seeds")
PRESET_DEFAULTS = {"train_noises": (0.0,)}  # what a preset that does not name a grid field sweeps


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
    def from_json(cls, text: str) -> "Job":
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
        return json.dumps({k: getattr(self, k) for k in ("status", "train_run_id", "eval_run_ids", "trained",
                                                         "evaluated", "learned", "seconds", "error")})


@dataclass
class StudySpec:
    preset: str = "demo"
    datasets: tuple | None = None
    models: tuple | None = None
    optimizers: tuple | None = None
    lrs: tuple | None = None
    batch_sizes: tuple | None = None
    train_noises: tuple | None = None  # etas of noise-injection training (0 = clean)
    seeds: tuple | None = None
    epochs: int | None = None
    noise: tuple | None = None  # noise configuration names: additive (the paper's), multiplicative, pcm
    etas: tuple | None = None  # levels of the eta-axis configurations (additive, multiplicative)
    times: tuple | None = None  # levels of the time-axis configurations (pcm), seconds
    trials: int | str | None = None
    patience: int | None = None
    batch_size: int | None = None  # one batch size: the same as batch_sizes=(batch_size,)

    def __post_init__(self):
        if self.batch_size is not None:
            if self.batch_sizes is not None and tuple(self.batch_sizes) != (self.batch_size,):
                raise LrnoiseError("give either --batch-size or --batch-sizes, not both")
            self.batch_sizes = (self.batch_size,)

    def setting(self, name: str):
        """The override if given, else the preset's value."""
        value = getattr(self, name)
        return value if value is not None else PRESETS[self.preset].get(name, PRESET_DEFAULTS.get(name))

    def grid(self, block: dict) -> dict:
        """A block's lists: the override, else the block's own, else the preset's."""
        return {f: getattr(self, f) or block.get(f) or self.setting(f) for f in GRID_FIELDS}

    def params(self) -> dict:
        """The study run's params (grid fields not overridden read 'preset')."""
        grid = {f: tracking.canonical(list(getattr(self, f))) if getattr(self, f) else "preset" for f in GRID_FIELDS}
        values = {"preset": self.preset, **grid, "epochs": self.setting("epochs"),
                  "noise": tracking.canonical([c.name for c in self.noise_configs()]),
                  "trials": self.setting("trials")}
        return {name: values[name] for name in tracking.STUDY_PARAMS}

    def noise_configs(self) -> tuple[NoiseConfig, ...]:
        """One NoiseConfig per noise model named, with the overridden levels and precision."""
        configs = []
        for name in self.setting("noise"):
            axis_levels = {"eta": self.etas, "t": self.times}
            probe = NoiseConfig(name)  # unknown noise model: one-line error
            configs.append(NoiseConfig(name, levels=axis_levels[probe.level_name],
                                       trials=self.setting("trials")).validate())
        return tuple(dict.fromkeys(configs))


def plan(spec: StudySpec) -> list[Job]:
    """Every configuration of the study, validated before anything runs."""
    if spec.preset not in PRESETS:
        raise LrnoiseError(f"unknown preset {spec.preset!r}: choose one of {', '.join(PRESETS)}")
    noise_configs = spec.noise_configs()
    jobs, seen = [], set()
    for block in PRESETS[spec.preset]["blocks"]:
        grid = spec.grid(block)
        for dataset, model, optimizer, lr, batch_size, train_noise, seed in itertools.product(
                *(grid[f] for f in GRID_FIELDS)):
            config = TrainConfig(dataset=dataset, model=model, optimizer=optimizer, lr=float(lr),
                                 batch_size=int(batch_size), train_noise=float(train_noise), seed=int(seed),
                                 epochs=spec.setting("epochs"), patience=spec.setting("patience")).validate()
            if config not in seen:
                seen.add(config)
                jobs.append(Job(config, noise_configs))
    return jobs


# ---------------------------------------------------------------- one configuration (any process)
def run_job(job: Job, experiment: str, parent_run_id: str | None, data_dir: str | None = None,
            claim: leases.Claim | None = None, sweep: SweepCache | None = None) -> Outcome:
    """Trains (or reuses / resumes) and noise-evaluates (or reuses) one configuration. Never raises.
    `claim`: the configuration's claim, staked by the study (Dispatcher); without it run_job claims it itself.
    `sweep`: the models this process keeps between configurations (reuse.SweepCache), if any.

    A model that did not learn is a result (its lr is too high), not a failure: it is not noise-evaluated.
    A configuration another live study holds comes back with status "busy" (run_study retries it later)."""
    started = time.perf_counter()
    outcome = Outcome(job, "ok")
    try:
        exp_id = tracking.ensure_experiment(experiment)
        key = tracking.config_key(job.train.params())
        with leases.claimed(exp_id, key, meanwhile=lambda: _prepare_if_new(job, exp_id, key, data_dir, sweep),
                              staked=claim) as mine:
            if mine:
                _train_and_evaluate(job, outcome, exp_id, experiment, parent_run_id, data_dir, sweep)
            else:  # another study works on it now: come back later and reuse what it made
                outcome.status = "busy"
    except Exception as exc:  # a failed configuration is reported; the grid goes on
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        traceback.print_exc()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _prepare_if_new(job: Job, exp_id: str, key: str, data_dir: str | None, sweep: SweepCache | None) -> None:
    """While the claim settles: the data, seeded model and stream of a configuration that has no training run
    yet (SweepCache.prepare; a read of the store, no write). One that ran before is reused or resumed: nothing."""
    if sweep is not None and not tracking.runs_with_config(exp_id, "train", key):
        sweep.prepare(job.train, data_dir)


def _train_and_evaluate(job: Job, outcome: Outcome, exp_id: str, experiment: str, parent_run_id: str | None,
                        data_dir: str | None, sweep: SweepCache | None) -> None:
    """The configuration's work, under its claim: reuse / resume / train, then each noise evaluation."""
    from lrnoise.noise_eval import noise_eval
    from lrnoise.train import train
    found = tracking.existing_run(exp_id, "train", tracking.config_key(job.train.params()))
    trained = None  # this process's own training: its model and data are reused by the evaluations
    if found.live:  # a process that lost its claim (lease timeout) but still beats: leave it
        outcome.status = "busy"
        return
    if found.finished:
        outcome.train_run_id, outcome.trained = found.finished, "reused"
    else:
        result = train(job.train, data_dir=data_dir, experiment=experiment, resume=found.resume,
                       parent_run_id=parent_run_id, sweep=sweep)
        outcome.train_run_id, outcome.trained = result.run_id, "resumed" if found.resume else "new"
        trained = result
    outcome.learned = tracking.learned(tracking.get_run(outcome.train_run_id))
    if not outcome.learned:
        outcome.evaluated = "skipped"
        return
    evaluated = []
    for config in job.noise:
        done = tracking.existing_run(exp_id, "noise_eval", config.run_key, source_run_id=outcome.train_run_id,
                                     resumable=False).finished
        if done:
            outcome.eval_run_ids.append(done)
            evaluated.append("reused")
        else:
            eval_run_id, _ = noise_eval(config, run_id=outcome.train_run_id, data_dir=data_dir,
                                        experiment=experiment, model=trained.model if trained else None,
                                        loaded_data=trained.dataset if trained else None,
                                        evaluator=trained.evaluator if trained else None)
            outcome.eval_run_ids.append(eval_run_id)
            evaluated.append("new")
    outcome.evaluated = evaluated[0] if len(set(evaluated)) == 1 else "mixed"


OUTCOME_LINE = "LRNOISE_OUTCOME "


def _worker_main(argv: list[str]) -> None:
    """`python -m lrnoise.study EXPERIMENT PARENT DATA_DIR`: a worker process. It reads one job (JSON) per line
    on stdin, runs it and prints its outcome line; one process serves many configurations, so the traced
    models of one configuration are reused by the next (reuse.SweepCache)."""
    experiment, parent, data_dir = argv
    sweep = SweepCache()
    for line in sys.stdin:
        if line.strip():
            job, claim = _from_job_line(line)
            outcome = run_job(job, experiment, parent or None, data_dir or None, claim=claim, sweep=sweep)
            print(OUTCOME_LINE + outcome.to_json(), flush=True)


def _job_line(job: Job, claim: leases.Claim | None) -> str:
    """What the study sends a worker process: the job and the claim the study staked for it (or null)."""
    return json.dumps({**json.loads(job.to_json()), "claim": dataclasses.asdict(claim) if claim else None})


def _from_job_line(line: str) -> tuple[Job, leases.Claim | None]:
    claim = json.loads(line).get("claim")
    return Job.from_json(line), leases.Claim(**claim) if claim else None


# ---------------------------------------------------------------- executors
def trace_group(job: Job) -> tuple:
    """Configurations of one group share one traced training step in a worker: reuse.SweepCache keeps a model
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


def _sequential(dispatcher: Dispatcher, experiment, parent, data_dir, on_done, sweep: SweepCache):
    """One configuration at a time in this process (the next one's claim staked meanwhile: see Dispatcher)."""
    while (taken := dispatcher.take(0)) is not None:
        job, claim = taken
        try:
            on_done(run_job(job, experiment, parent, data_dir, claim=claim, sweep=sweep))
        finally:
            dispatcher.finish(claim)


def _local_workers(dispatcher: Dispatcher, workers, experiment, parent, data_dir, on_done, log_dir):
    """N configurations at once, one long-lived worker process per slot (pinned to one GPU when GPUs exist, else
    given its share of TensorFlow's inter-op threads) fed one configuration at a time by the dispatcher
    (preferring its own trace group, with the claim staked for it); a worker that dies fails its configuration
    and is replaced."""
    gpus = _gpu_count()

    def start(slot, log):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
        else:
            env.update({k: env.get(k, v) for k, v in worker_threads(workers).items()})  # the user's setting wins
        return subprocess.Popen([sys.executable, "-m", "lrnoise.study", experiment, parent or "", data_dir or ""],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)

    def run_one(proc, job, claim, log) -> Outcome:
        try:
            proc.stdin.write(_job_line(job, claim) + "\n")
            proc.stdin.flush()
        except OSError:  # the worker died between two configurations
            return Outcome(job, "failed", error=f"worker exited {proc.wait()} (log {log.name})")
        for row in proc.stdout:  # the worker's own output goes to its log; the outcome line ends the job
            if row.startswith(OUTCOME_LINE):
                return Outcome(job, **json.loads(row[len(OUTCOME_LINE):]))
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


def _run_job_in_worker(*args) -> Outcome:
    """run_job for a Ray task, with the worker process's own SweepCache (a long-lived worker reuses its models)."""
    if not _WORKER_SWEEP:
        _WORKER_SWEEP.append(SweepCache())
    return run_job(*args, sweep=_WORKER_SWEEP[0])


def _ray(jobs, experiment, parent, data_dir, on_done, address):
    try:
        import ray
    except ImportError:
        raise LrnoiseError("--executor ray needs Ray: pip install 'lrnoise[ray]'") from None
    ray.init(address=address, runtime_env={"env_vars": server.worker_env()}, ignore_reinit_error=True,
             log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        task = ray.remote(num_gpus=gpus, max_retries=0)(_run_job_in_worker)
        pending = {task.remote(job, experiment, parent, data_dir): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                on_done(ray.get(ready[0]))
            except Exception as exc:  # the task itself died (worker crash)
                on_done(Outcome(job, "failed", error=f"ray task failed: {type(exc).__name__}"))
    finally:
        ray.shutdown()


def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for row in out.splitlines() if row.startswith("GPU "))


# ---------------------------------------------------------------- the study
class Progress:
    """Done / running / left, with an estimate from the configurations this study actually ran."""

    def __init__(self, total: int, workers: int):
        self.total, self.workers, self.done, self.ran, self.failed = total, workers, 0, [], []
        self.started = time.perf_counter()
        self.lock = threading.Lock()

    def __call__(self, outcome: Outcome) -> None:
        with self.lock:
            self.done += 1
            if outcome.trained in ("new", "resumed") or outcome.evaluated in ("new", "mixed"):
                self.ran.append(outcome.seconds)
            if outcome.status != "ok":
                self.failed.append(outcome)
            left = self.total - self.done
            running = min(self.workers, left)
            eta = (sum(self.ran) / len(self.ran)) * (left / self.workers) if self.ran else 0.0
            what = "FAILED " + outcome.error if outcome.status != "ok" else \
                f"train {outcome.trained}, noise-eval {outcome.evaluated}"
            print(f"[study] {self.done}/{self.total} done, {running} running, {left - running} waiting, "
                  f"~{_duration(eta)} left | {outcome.job.name}: {what} ({outcome.seconds:.0f}s)", flush=True)


def _duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


EXECUTORS = ("local", "ray")
BUSY_POLL = 5.0  # seconds between looks at configurations another study holds


def _end_dead_runs(exp_id: str) -> None:
    """Ends what dead processes of this host left RUNNING in the experiment (leases.end_dead_runs), saying so."""
    ended = leases.end_dead_runs(exp_id)
    if ended:
        print(f"[study] ended {len(ended)} runs left RUNNING by dead processes on this host", flush=True)


def default_workers(spec: StudySpec) -> int:
    """Configurations at once when --workers is not given: the preset's measured choice (2 for the digits
    presets, whose tiny steps leave a core idle; 1 for CIFAR), at most one per CPU core, and 1 on a GPU machine
    (name --workers N there to use N GPUs)."""
    if _gpu_count():
        return 1
    return max(1, min(PRESETS[spec.preset].get("workers", 1), os.cpu_count() or 1))


def run_study(spec: StudySpec, experiment: str = tracking.DEFAULT_EXPERIMENT, workers: int | None = None,
              executor: str = "local", ray_address: str | None = None, data_dir: str | None = None,
              report: bool = True, report_dir: str | None = None) -> tuple[list[Outcome], object]:
    """Runs the grid (reusing what exists), then the report. Returns (outcomes, report or None).
    `workers`: configurations at once (None: default_workers)."""
    jobs = plan(spec)  # all validation before anything runs
    workers = default_workers(spec) if workers is None else workers
    if executor not in EXECUTORS:
        raise LrnoiseError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise LrnoiseError(f"workers must be >= 1, got {workers}")
    if executor == "ray" and ray_address and not server.is_http(tracking.tracking_uri()):
        raise LrnoiseError("a Ray cluster's workers need a tracking server they can reach: set MLFLOW_TRACKING_URI "
                           "to http(s)://... (a local sqlite store works only with a local Ray instance)")
    data.require([job.train.dataset for job in jobs], data_dir)  # every dataset, once, before any run
    experiment = tracking.entry_point_experiment() or experiment  # under `mlflow run`: its experiment
    exp_id = tracking.ensure_experiment(experiment)
    parallel = executor == "ray" or workers > 1
    outcomes: list[Outcome] = []
    # the study's own server exits while the report is written (~2 s); a thread that is not joined below (an
    # error) still ends before the process does
    stopping: list[threading.Thread] = []
    with server.served_if_needed(parallel, stopping):
        _end_dead_runs(exp_id)  # a study killed on this host: its runs are resumed below without a lease wait
        parent = tracking.start_study_run(exp_id, spec.params())
        print(f"[study] {spec.preset}: {len(jobs)} configurations x {len(jobs[0].noise)} noise configurations "
              f"({', '.join(c.name for c in jobs[0].noise)}), experiment {experiment!r}, study run {parent}, "
              f"executor {executor}" + (f" x{workers}" if executor == "local" else ""), flush=True)
        progress = Progress(len(jobs), workers)
        sweep = SweepCache()  # this process's models, kept between the configurations it runs itself
        busy: list[Job] = []

        def done(outcome):
            if outcome.status == "busy":
                busy.append(outcome.job)
                return
            outcomes.append(outcome)
            progress(outcome)

        ok = False
        try:
            if executor == "ray":
                _ray(jobs, experiment, parent, data_dir, done, ray_address)
            else:
                dispatcher = Dispatcher(jobs, exp_id)
                try:
                    if workers > 1:
                        with tempfile.TemporaryDirectory(prefix="lrnoise-workers-") as logs:
                            _local_workers(dispatcher, workers, experiment, parent, data_dir, done, logs)
                    else:
                        _sequential(dispatcher, experiment, parent, data_dir, done, sweep)
                finally:
                    dispatcher.close()
            while busy:  # configurations another live study holds: wait for it (or its lease) to end, then reuse
                waiting = list(busy)
                busy.clear()
                print(f"[study] {len(waiting)} configurations held by another live study; checking again in "
                      f"{BUSY_POLL:.0f}s", flush=True)
                time.sleep(BUSY_POLL)
                for job in waiting:
                    done(run_job(job, experiment, parent, data_dir, sweep=sweep))
            ok = not progress.failed
        finally:
            counts = (len(jobs), len(progress.failed), sum(o.trained in ("new", "resumed") for o in outcomes),
                      sum(o.trained == "reused" for o in outcomes), sum(not o.learned for o in outcomes))
            tracking.end_study_run(parent, counts, ok)
            _end_dead_runs(exp_id)  # e.g. a worker process that died mid-configuration
    built = None
    if report:
        from lrnoise import report as report_module
        built = report_module.build_and_write(experiment, out=report_dir, noise_config="all")
        print(report_module.summary_text(built), flush=True)
    for outcome in outcomes:
        if not outcome.learned:
            print(f"[study] did not learn (a_0 not above chance; not noise-evaluated): {outcome.job.name}")
    for failure in progress.failed:
        print(f"[study] failed: {failure.job.name}: {failure.error}", file=sys.stderr)
    print(f"[study] {tracking.where_to_look(exp_id)}" + (f"; report in {built.out}" if built else ""), flush=True)
    for thread in stopping:
        thread.join()
    return outcomes, built


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
