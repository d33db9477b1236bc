"""Which configuration a slot (a local worker, a Ray actor, this process) runs next, and what it is sent.

A slot keeps to its trace group (trace_group, choose, next_job: no new tracing of the same step); the Dispatcher
hands the configurations out and stakes the claim of each slot's next one meanwhile (leases.stake). A worker
process or actor receives one job line per configuration (job_line: the Job and its staked claim, as JSON).
"""

from __future__ import annotations

import dataclasses
import json
import threading

from lrnoise import names
from lrnoise.store import leases
from lrnoise.study.job import Job


def job_line(job: Job, claim: leases.Claim | None) -> str:
    """What the study sends a worker process: the job and the claim the study staked for it (or null)."""
    return json.dumps({**json.loads(job.to_json()), "claim": dataclasses.asdict(claim) if claim else None})


def from_job_line(line: str) -> tuple[Job, leases.Claim | None]:
    claim = json.loads(line).get("claim")
    return Job.from_json(line), leases.Claim(**claim) if claim else None


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
