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

import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lrnoise import data, paper, tracking
from lrnoise.errors import LrnoiseError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "nadam", "adamax")

# Each preset is a list of blocks; a block's grid is the product of its lists. Overrides replace a field in
# every block; identical configurations from two blocks run once.
PRESETS = {
    "paper": {
        "blocks": [
            {"datasets": paper.DATASETS, "models": paper.MODELS, "optimizers": ("adam",), "lrs": paper.LRS},
            {"datasets": ("cifar10",), "models": ("resnet20",), "optimizers": OPTIMIZERS, "lrs": (0.00075,)},
        ],
        "seeds": (0,), "epochs": 200, "patience": 20, "batch_size": 128,  # "trained to convergence"
        "etas": paper.ETAS, "trials": 10,
    },
    "optimizers": {
        "blocks": [{"datasets": ("cifar10",), "models": ("resnet20",), "optimizers": OPTIMIZERS,
                    "lrs": (0.00075,)}],
        "seeds": (0,), "epochs": 200, "patience": 20, "batch_size": 128, "etas": paper.ETAS, "trials": 10,
    },
    # The paper's shape on the embedded digits data, sized for <= 10 minutes on 2 CPU cores.
    "demo": {
        "blocks": [
            {"datasets": ("digits",), "models": ("resnet20", "resnet32"), "optimizers": ("adam",),
             "lrs": paper.LRS},
            {"datasets": ("digits",), "models": ("resnet20",), "optimizers": OPTIMIZERS, "lrs": (0.00075,)},
        ],
        "seeds": (0,), "epochs": 10, "patience": 4, "batch_size": 32, "etas": paper.ETAS, "trials": 5,
    },
}
GRID_FIELDS = ("datasets", "models", "optimizers", "lrs")


@dataclass(frozen=True)
class Job:
    """One configuration: a training and its noise evaluation."""
    train: dict  # TrainConfig fields
    noise: dict  # etas, trials, seed, targets, noise

    @property
    def name(self) -> str:
        t = self.train
        return f"{t['dataset']}/{t['model']}/{t['optimizer']}/lr={t['lr']:g}/seed={t['seed']}"


@dataclass
class Outcome:
    job: Job
    status: str  # ok | failed
    train_run_id: str | None = None
    eval_run_id: str | None = None
    trained: str = ""  # new | resumed | reused
    evaluated: str = ""  # new | reused
    seconds: float = 0.0
    error: str = ""


@dataclass
class StudySpec:
    preset: str = "demo"
    datasets: tuple | None = None
    models: tuple | None = None
    optimizers: tuple | None = None
    lrs: tuple | None = None
    seeds: tuple | None = None
    epochs: int | None = None
    etas: tuple | None = None
    trials: int | str | None = None
    extra: dict = field(default_factory=dict)  # patience, batch_size overrides (tests)

    def params(self) -> dict:
        """The study run's params (grid fields not overridden read 'preset')."""
        p = PRESETS[self.preset]
        grid = [tracking.canonical(list(getattr(self, f))) if getattr(self, f) else "preset" for f in GRID_FIELDS]
        values = (self.preset, *grid, tracking.canonical(list(self.seeds or p["seeds"])), self.epochs or p["epochs"],
                  tracking.canonical(list(self.etas or p["etas"])), self.trials or p["trials"])
        return dict(zip(tracking.STUDY_PARAMS, values))


def plan(spec: StudySpec) -> list[Job]:
    """Every configuration of the study, validated before anything runs."""
    if spec.preset not in PRESETS:
        raise LrnoiseError(f"unknown preset {spec.preset!r}: choose one of {', '.join(PRESETS)}")
    from lrnoise.noise import DEFAULT_CI_TARGET, DEFAULT_MAX_TRIALS, check_options
    from lrnoise.train import TrainConfig
    preset = PRESETS[spec.preset]
    seeds = spec.seeds or preset["seeds"]
    etas = spec.etas or preset["etas"]
    trials = spec.trials or preset["trials"]
    check_options(list(etas), trials, "trainable", "additive")
    jobs, seen = [], set()
    for block in preset["blocks"]:
        grid = {f: getattr(spec, f) or block[f] for f in GRID_FIELDS}
        for dataset, model, optimizer, lr, seed in itertools.product(
                grid["datasets"], grid["models"], grid["optimizers"], grid["lrs"], seeds):
            config = TrainConfig(dataset=dataset, model=model, optimizer=optimizer, lr=float(lr), seed=int(seed),
                                 epochs=spec.epochs or preset["epochs"],
                                 patience=spec.extra.get("patience", preset["patience"]),
                                 batch_size=spec.extra.get("batch_size", preset["batch_size"])).validate()
            job = Job(config.params(), tracking.noise_params(etas, trials, 0, "trainable", "additive",
                                                             DEFAULT_CI_TARGET, DEFAULT_MAX_TRIALS))
            key = tracking.config_key(job.train)
            if key not in seen:
                seen.add(key)
                jobs.append(job)
    return jobs


# ---------------------------------------------------------------- one configuration (any process)
def run_job(job: Job, experiment: str, parent_run_id: str | None, data_dir: str | None = None) -> Outcome:
    """Trains (or reuses / resumes) and noise-evaluates (or reuses) one configuration. Never raises."""
    import keras

    from lrnoise import noise
    from lrnoise.train import TrainConfig, train
    started = time.perf_counter()
    outcome = Outcome(job, "ok")
    try:
        exp_id = tracking.ensure_experiment(experiment)
        config = TrainConfig(**job.train)
        runs = tracking.runs_with_config(exp_id, "train", tracking.config_key(config.params()))
        finished = [r for r in runs if r.info.status == "FINISHED"]
        unfinished = [r for r in runs if r.info.status != "FINISHED"]
        if finished:
            outcome.train_run_id, outcome.trained = finished[0].info.run_id, "reused"
        else:
            for stale in unfinished[1:]:  # only the newest unfinished run is resumed
                tracking.mark_failed(stale.info.run_id)
            resume = unfinished[0].info.run_id if unfinished else None
            result = train(config, data_dir=data_dir, experiment=experiment, resume=resume,
                           parent_run_id=parent_run_id)
            outcome.train_run_id, outcome.trained = result.run_id, "resumed" if resume else "new"
            keras.backend.clear_session()
        noise_key = tracking.config_key(job.noise)
        evals = tracking.runs_with_config(exp_id, "noise_eval", noise_key, source_run_id=outcome.train_run_id)
        done = [r for r in evals if r.info.status == "FINISHED"]
        for stale in (r for r in evals if r.info.status != "FINISHED"):
            tracking.mark_failed(stale.info.run_id)
        if done:
            outcome.eval_run_id, outcome.evaluated = done[0].info.run_id, "reused"
        else:
            outcome.eval_run_id, _ = noise.noise_eval(run_id=outcome.train_run_id, data_dir=data_dir,
                                                      **job.noise)
            outcome.evaluated = "new"
            keras.backend.clear_session()
    except Exception as exc:  # a failed configuration is reported; the grid goes on
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        traceback.print_exc()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _worker_main(argv: list[str]) -> None:
    """`python -m lrnoise.study JOB_JSON EXPERIMENT PARENT DATA_DIR`: one configuration in a fresh process."""
    job_json, experiment, parent, data_dir = argv
    spec = json.loads(job_json)
    outcome = run_job(Job(spec["train"], spec["noise"]), experiment, parent or None, data_dir or None)
    print("LRNOISE_OUTCOME " + json.dumps({k: v for k, v in asdict(outcome).items() if k != "job"}), flush=True)


# ---------------------------------------------------------------- executors
def _local_workers(jobs, workers, experiment, parent, data_dir, on_done, log_dir):
    """N configurations at once, each in its own process (pinned to one GPU when GPUs exist)."""
    gpus = _gpu_count()
    lock = threading.Lock()
    queue = list(jobs)

    def worker(slot):
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop(0)
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            log = os.path.join(log_dir, f"{tracking.config_key(job.train)[:12]}.log")
            with open(log, "w") as out:
                proc = subprocess.run([sys.executable, "-m", "lrnoise.study", json.dumps(asdict(job)), experiment,
                                       parent or "", data_dir or ""], stdout=out, stderr=subprocess.STDOUT,
                                      env=env)
            line = [row for row in Path(log).read_text().splitlines() if row.startswith("LRNOISE_OUTCOME ")]
            if line:
                outcome = Outcome(job, **json.loads(line[-1][len("LRNOISE_OUTCOME "):]))
            else:
                outcome = Outcome(job, "failed", error=f"worker exited {proc.returncode} (log {log})")
            on_done(outcome)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _ray(jobs, experiment, parent, data_dir, on_done, address):
    try:
        import ray
    except ImportError:
        raise LrnoiseError("--executor ray needs Ray: pip install 'lrnoise[ray]'") from None
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY", "KERAS_BACKEND")
           if k in os.environ}
    ray.init(address=address, runtime_env={"env_vars": env}, ignore_reinit_error=True, log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        task = ray.remote(num_gpus=gpus, max_retries=0)(run_job)
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


@contextmanager
def tracking_server_if_needed(parallel: bool):
    """With parallel writers and a sqlite store, serve the store over HTTP on 127.0.0.1 while the study runs."""
    uri = tracking.tracking_uri()
    if not parallel or not uri.startswith("sqlite:"):
        yield uri
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    served = f"http://127.0.0.1:{port}"
    try:
        _wait_for(served, server)
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = served
        tracking.set_tracking_uri(served)
        print(f"[study] serving {uri} at {served} for parallel workers", flush=True)
        yield served
    finally:
        server.terminate()
        server.wait(timeout=60)
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
        tracking.set_tracking_uri(uri)


def _wait_for(uri: str, server: subprocess.Popen, seconds: float = 120) -> None:
    import urllib.request
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            raise LrnoiseError(f"mlflow server for the study exited with status {server.returncode}")
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise LrnoiseError(f"mlflow server at {uri} did not answer within {seconds:.0f}s")


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
            if outcome.trained in ("new", "resumed") or outcome.evaluated == "new":
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


def run_study(spec: StudySpec, experiment: str = tracking.DEFAULT_EXPERIMENT, workers: int = 1,
              executor: str = "local", ray_address: str | None = None, data_dir: str | None = None,
              report: bool = True, report_dir: str | None = None) -> tuple[list[Outcome], object]:
    """Runs the grid (reusing what exists), then the report. Returns (outcomes, report or None)."""
    jobs = plan(spec)  # all validation before anything runs
    if executor not in ("local", "ray"):
        raise LrnoiseError(f"unknown executor {executor!r}: choose local or ray")
    if workers < 1:
        raise LrnoiseError(f"workers must be >= 1, got {workers}")
    if executor == "ray" and ray_address and not tracking.tracking_uri().startswith(("http://", "https://")):
        raise LrnoiseError("a Ray cluster's workers need a tracking server they can reach: set MLFLOW_TRACKING_URI "
                           "to http(s)://... (a local sqlite store works only with a local Ray instance)")
    datasets = {job.train["dataset"] for job in jobs}
    for name in datasets - {"digits"}:  # fail fast on a missing data dir, before any run starts
        if data_dir is not None:
            data.load(name, data_dir=data_dir)
    experiment = tracking.entry_point_experiment() or experiment  # under `mlflow run`: its experiment
    exp_id = tracking.ensure_experiment(experiment)
    parallel = executor == "ray" or workers > 1
    outcomes: list[Outcome] = []
    with tracking_server_if_needed(parallel):
        parent = tracking.start_study_run(exp_id, spec.params())
        print(f"[study] {spec.preset}: {len(jobs)} configurations, experiment {experiment!r}, "
              f"study run {parent}, executor {executor}" + (f" x{workers}" if executor == "local" else ""), flush=True)
        progress = Progress(len(jobs), workers)

        def done(outcome):
            outcomes.append(outcome)
            progress(outcome)

        ok = False
        try:
            if executor == "ray":
                _ray(jobs, experiment, parent, data_dir, done, ray_address)
            elif workers > 1:
                with tempfile.TemporaryDirectory(prefix="lrnoise-workers-") as logs:
                    _local_workers(jobs, workers, experiment, parent, data_dir, done, logs)
            else:
                for job in jobs:
                    done(run_job(job, experiment, parent, data_dir))
            ok = not progress.failed
        finally:
            counts = (len(jobs), len(progress.failed), sum(o.trained in ("new", "resumed") for o in outcomes),
                      sum(o.trained == "reused" for o in outcomes))
            tracking.end_study_run(parent, counts, ok)
    built = None
    if report:
        from lrnoise import report as report_module
        built = report_module.build(experiment, report_dir)
        print(report_module.summary_text(built), flush=True)
    for failure in progress.failed:
        print(f"[study] failed: {failure.job.name}: {failure.error}", file=sys.stderr)
    return outcomes, built


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
