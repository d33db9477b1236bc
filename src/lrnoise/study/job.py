"""One configuration of a study (Job: a training and its noise evaluations) and what running it does, in any
process: run_job claims it (leases), reuses, resumes or trains it, then evaluates it under each noise
configuration, and reports an Outcome; it never raises. Context is what every configuration of one study shares.
Job, Outcome and Context cross process boundaries as JSON. Which process runs a configuration is the executors'
(local.py, ray_executor.py), fed by dispatch.py's Dispatcher.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from dataclasses import dataclass, field

from lrnoise import names
from lrnoise.config import Execution, TrainConfig, data_name
from lrnoise.noise.evaluation import noise_eval
from lrnoise.noise.noise_config import NoiseConfig
from lrnoise.report import evaluation_figure
from lrnoise.store import leases, lookup, session
from lrnoise.training.build import SweepCache
from lrnoise.training.train import train

BUSY_POLL = 5.0  # seconds between looks at a configuration another live study holds (an Outcome "busy")


@dataclass(frozen=True)
class Job:
    """One configuration: a training and its noise evaluations (one per noise configuration)."""

    train: TrainConfig
    noise: tuple[NoiseConfig, ...]

    @property
    def name(self) -> str:
        t = self.train
        noisy = f"/train_noise={t.train_noise:g}" if t.train_noise else ""
        data = data_name(t.dataset, t.train_examples, t.test_examples)  # the subsets it trains and scores on
        return f"{data}/{t.model}/{t.optimizer}/lr={t.lr:g}/B={t.batch_size}{noisy}/seed={t.seed}"

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
        exp_id = session.ensure_experiment(ctx.experiment)
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
    if sweep is not None and not lookup.runs_with_config(exp_id, "train", key, same_semantics=True):
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
    outcome.learned = lookup.learned(session.get_run(outcome.train_run_id))
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
                draw=evaluation_figure.write_noise_curve,  # noise_curve.png in the evaluation run
            )
            outcome.eval_run_ids.append(eval_run_id)
            evaluated.append("new")
    outcome.evaluated = evaluated[0] if len(set(evaluated)) == 1 else "mixed"
