"""The executors of this machine: `sequential` runs one configuration at a time in this process; `local_workers`
N at once in long-lived worker processes (each given its GPUs when there are GPUs: gpus.py, else its share of
TensorFlow's inter-op threads), both fed by a Dispatcher. A worker process is this module run as
`python -m lrnoise.study.local CONTEXT_JSON`: job lines in on stdin, one outcome line out per configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from lrnoise.store import leases
from lrnoise.study.dispatch import Dispatcher, from_job_line, job_line
from lrnoise.study.gpus import gpu_assignment, gpu_devices
from lrnoise.study.job import Context, Outcome, run_job
from lrnoise.training.build import SweepCache

OUTCOME_LINE = "LRNOISE_OUTCOME "


def _worker_main(argv: list[str]) -> None:
    """`python -m lrnoise.study.local CONTEXT_JSON`: a local worker process, serving one study for its lifetime.
    It reads one job (JSON) per line on stdin, runs it and prints its outcome line; one process serves many
    configurations, so the traced models of one configuration are reused by the next (build.SweepCache)."""
    ctx = Context.from_json(argv[0])
    sweep = SweepCache()
    with leases.lease_timeout_of(ctx.lease_timeout):
        for line in sys.stdin:
            if line.strip():
                job, claim = from_job_line(line)
                print(OUTCOME_LINE + run_job(job, ctx, claim=claim, sweep=sweep).to_json(), flush=True)


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
            [sys.executable, "-m", "lrnoise.study.local", ctx.to_json()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )

    def run_one(proc, job, claim, log) -> Outcome:
        try:
            proc.stdin.write(job_line(job, claim) + "\n")
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


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
