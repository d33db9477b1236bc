"""The whole experiment grid as one resumable command: every training, every noise evaluation, the report.

Idempotent: before a configuration runs, the tracking server is asked for a finished training run with the
same configuration key (and a finished noise evaluation with the same noise parameters); what exists is
reused, an interrupted training run is resumed from its last checkpoint in the same run, and a noise
evaluation left unfinished is marked FAILED and redone. Killing the study and starting it again finishes the
grid with exactly one finished run of each.

This module plans (a grid.StudySpec becomes Jobs) and drives; job.py runs one configuration, local.py and
ray_executor.py run them all (this process, local worker processes, Ray actors), fed by dispatch.py's Dispatcher.
Parallel workers need a tracking server: with a sqlite store the study starts `mlflow server` on 127.0.0.1.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections import Counter

from lrnoise import NOISE_SEMANTICS, TRAINING_SEMANTICS, __version__, names
from lrnoise.config import SUBSETS, Placement
from lrnoise.data import sources
from lrnoise.errors import LrnoiseError
from lrnoise.grid import PRESETS, StudySpec
from lrnoise.noise import noise_config
from lrnoise.report import assembly, console, results
from lrnoise.settings import ReportSettings, StudySettings
from lrnoise.store import leases, lookup, server, session
from lrnoise.study import gpus, local, ray_executor
from lrnoise.study.dispatch import Dispatcher
from lrnoise.study.job import BUSY_POLL, Context, Job, Outcome, run_job
from lrnoise.training.build import SweepCache

# logged as the study resolves them (a subset: None is the whole set)
SETTINGS = ("epochs", "trials", "patience", "budget", "reference_batch_size", *SUBSETS)


def study_params(spec: StudySpec) -> dict:
    """The study run's params: every StudySpec field (grid fields and settings not overridden read 'preset', a
    subset not asked for 'all'), the noise configurations by name."""
    values = {f: spec.setting(f) if f in SETTINGS else getattr(spec, f) for f in names.STUDY_PARAMS}
    values["noise"] = [c.name for c in noise_config.study_configs(spec)]
    return {
        k: unset(k) if v is None else names.canonical(list(v) if isinstance(v, tuple) else v) for k, v in values.items()
    }


def unset(param: str) -> str:
    """A study param's value where neither the command nor the preset gives one."""
    return "all" if param in SUBSETS else "preset"


def plan(spec: StudySpec) -> list[Job]:
    """Every configuration of the study with its noise configurations, validated before anything runs."""
    noise = noise_config.study_configs(spec.validate())
    return [Job(config, noise) for config in spec.train_configs()]


# ---------------------------------------------------------------- what is not reused, and why
def semantics_lines(exp_id: str, jobs: list[Job], reuse_any: bool) -> list[str]:
    """One line per kind of run (training, noise evaluation) for the finished runs made under other semantics
    than this code's (lrnoise.TRAINING_SEMANTICS / NOISE_SEMANTICS): the study makes them again, or with
    --reuse any reuses them. Read from the store once, before anything runs (leases.existing_run decides)."""
    trained: dict[str, list] = {}
    for key, _, run_id, semantics in lookup.finished_semantics(exp_id, "train"):
        trained.setdefault(key, []).append((run_id, semantics))
    evaluated: dict[tuple, list] = {}
    for key, source, _, semantics in lookup.finished_semantics(exp_id, "noise_eval"):
        evaluated.setdefault((source, key), []).append(semantics)
    other_trainings, other_evaluations = [], []
    for job in jobs:
        runs = trained.get(names.config_key(job.train.params()), [])
        same = [run_id for run_id, semantics in runs if semantics == TRAINING_SEMANTICS]
        if not same and runs:
            other_trainings.append(runs[0][1])
        source = same[0] if same else runs[0][0] if runs and reuse_any else None
        for config in job.noise if source else ():
            found = evaluated.get((source, config.run_key), [])
            if found and NOISE_SEMANTICS not in found:
                other_evaluations.append(found[0])
    lines = []
    for what, count, other, current in (
        ("training", "configurations", other_trainings, TRAINING_SEMANTICS),
        ("noise evaluation", "evaluations", other_evaluations, NOISE_SEMANTICS),
    ):
        if not other:
            continue
        made = ", ".join(f"{s} ({n})" for s, n in sorted(Counter(other).items()))
        verb = "trains" if what == "training" else "measures"
        if reuse_any:
            lines.append(
                f"[study] {what}: {len(other)} {count} reused although made under {what} semantics {made} "
                f"(--reuse any); this lrnoise {__version__} {verb} under {current}"
            )
        else:
            lines.append(
                f"[study] {what}: {len(other)} {count} made again: their finished runs were made under {what} "
                f"semantics {made}, this lrnoise {__version__} {verb} under {current} (--reuse any reuses them)"
            )
    return lines


# ---------------------------------------------------------------- the study
class Progress:
    """Done / running / left, with an estimate from the configurations this study actually ran."""

    def __init__(self, total: int, workers: int):
        self.total, self.workers, self.done, self.ran, self.failed = total, workers, 0, [], []
        self.started = time.perf_counter()
        self.lock = threading.Lock()

    def set_workers(self, workers: int) -> None:
        """How many configurations run at once, once the executor knows (a Ray cluster's slots)."""
        with self.lock:
            self.workers = workers

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
            what = (
                "FAILED " + outcome.error
                if outcome.status != "ok"
                else f"train {outcome.trained}, noise-eval {outcome.evaluated}"
            )
            print(
                f"[study] {self.done}/{self.total} done, {running} running, {left - running} waiting, "
                f"~{_duration(eta)} left | {outcome.job.name}: {what} ({outcome.seconds:.0f}s)",
                flush=True,
            )


def _duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _end_dead_runs(exp_id: str) -> None:
    """Ends what dead processes of this host left RUNNING in the experiment (leases.end_dead_runs), saying so."""
    ended = leases.end_dead_runs(exp_id)
    if ended:
        print(f"[study] ended {len(ended)} runs left RUNNING by dead processes on this host", flush=True)


def preset_workers(spec: StudySpec) -> int:
    """The preset's measured configurations at once per CPU machine (2 for the digits presets, whose tiny steps
    leave a core idle, and for fashion, where one and two took the same time; 1 for CIFAR)."""
    return PRESETS[spec.preset].get("workers", 1)


def default_workers(spec: StudySpec, placement: Placement = Placement()) -> int:
    """Local configurations at once when --workers is not given: one per GPU (or GPU share) where there are
    GPUs, else the preset's choice, at most one per CPU core (gpus.default_local_workers)."""
    return gpus.default_local_workers(preset_workers(spec), placement.gpus_per_training)


def run_study(spec: StudySpec, settings: StudySettings = StudySettings()) -> tuple[list[Outcome], object]:
    """Runs the grid (reusing what exists), then the report. Returns (outcomes, report or None). `settings`:
    where the runs go and how the configurations run (StudySettings; workers None: default_workers)."""
    jobs = plan(spec)  # all validation before anything runs
    settings.validate()
    executor, placement, experiment = settings.executor, settings.placement, settings.experiment
    workers = default_workers(spec, placement) if settings.workers is None else settings.workers
    if executor == "local":  # more workers than the GPUs allow: refused before anything runs
        gpus.gpu_assignment(workers, gpus.gpu_devices(), placement.gpus_per_training)
    if executor == "ray" and settings.ray_address and not session.is_http(session.tracking_uri()):
        raise LrnoiseError(
            "a Ray cluster's workers need a tracking server they can reach: set MLFLOW_TRACKING_URI "
            "to http(s)://... (a local sqlite store works only with a local Ray instance)"
        )
    sources.require([job.train.dataset for job in jobs], settings.data_dir)  # every dataset, once, before any run
    experiment = session.entry_point_experiment() or experiment  # under `mlflow run`: its experiment
    exp_id = session.ensure_experiment(experiment)
    parallel = executor == "ray" or workers > 1
    outcomes: list[Outcome] = []
    # the study's own server exits while the report is written (~2 s); a thread that is not joined below (an
    # error) still ends before the process does
    stopping: list[threading.Thread] = []
    with leases.lease_timeout_of(settings.lease_timeout), server.served_if_needed(parallel, stopping):
        _end_dead_runs(exp_id)  # a study killed on this host: its runs are resumed below without a lease wait
        parent = leases.start_study_run(exp_id, study_params(spec))
        ctx = Context(experiment, parent, settings.data_dir, settings.execution, settings.lease_timeout, settings.reuse)
        print(
            f"[study] {spec.preset}: {len(jobs)} configurations x {len(jobs[0].noise)} noise configurations "
            f"({', '.join(c.name for c in jobs[0].noise)}), experiment {experiment!r}, study run {parent}, "
            f"executor {executor}" + (f" x{workers}" if executor == "local" else ""),
            flush=True,
        )
        for line in semantics_lines(exp_id, jobs, ctx.reuse_any):
            print(line, flush=True)
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
            dispatcher = Dispatcher(jobs, exp_id)
            try:
                if executor == "ray":
                    ray_executor.ray_actors(
                        dispatcher,
                        ctx,
                        done,
                        settings.ray_address,
                        preset_workers(spec),
                        placement.cpus_per_training,
                        placement.gpus_per_training,
                        placement.runtime_env(),
                        on_slots=progress.set_workers,
                    )
                elif workers > 1 or (placement.gpus_per_training is not None and gpus.gpu_devices()):
                    # (one worker process too when the user chose the GPUs: it sees only its own)
                    with tempfile.TemporaryDirectory(prefix="lrnoise-workers-") as logs:
                        local.local_workers(dispatcher, workers, ctx, done, logs, placement.gpus_per_training)
                else:
                    local.sequential(dispatcher, ctx, done, sweep)
            finally:
                dispatcher.close()
            while busy:  # configurations another live study holds: wait for it (or its lease) to end, then reuse
                waiting = list(busy)
                busy.clear()
                print(
                    f"[study] {len(waiting)} configurations held by another live study; checking again in "
                    f"{BUSY_POLL:.0f}s",
                    flush=True,
                )
                time.sleep(BUSY_POLL)
                for job in waiting:
                    done(run_job(job, ctx, sweep=sweep))
            ok = not progress.failed
        finally:
            counts = (
                len(jobs),
                len(progress.failed),
                sum(o.trained in ("new", "resumed") for o in outcomes),
                sum(o.trained == "reused" for o in outcomes),
                sum(not o.learned for o in outcomes),
            )
            leases.end_study_run(parent, counts, ok)
            _end_dead_runs(exp_id)  # e.g. a worker process that died mid-configuration
    built = None
    if settings.report:
        built = assembly.build_and_write(ReportSettings(experiment, out=settings.report_dir, noise_config=results.ALL))
        print(console.summary_text(built), flush=True)
    for outcome in outcomes:
        if not outcome.learned:
            print(f"[study] did not learn (a_0 not above chance; not noise-evaluated): {outcome.job.name}")
    for failure in progress.failed:
        print(f"[study] failed: {failure.job.name}: {failure.error}", file=sys.stderr)
    print(f"[study] {session.where_to_look(exp_id)}" + (f"; report in {built.out}" if built else ""), flush=True)
    for thread in stopping:
        thread.join()
    return outcomes, built
