"""Report speed: seconds to build every table and figure from a tracking store holding 100 and 1,000
finished training runs (with noise summaries), and the growth between the two.
Targets: 1,000 runs in under 60 s on 2 cores; growth no worse than linear (ratio <= 10).
LRNOISE_BENCH_QUICK=1: 10 and 100 runs (still recorded under the 100 / 1000 keys: a smoke test only)."""
import os
import tempfile
import time

import _common
import mlflow
from mlflow.entities import Metric, Param

from lrnoise import paper, report, tracking


def fill(experiment: str, count: int) -> None:
    """`count` finished training runs over the paper's grid, with the noise summary a study writes."""
    client = mlflow.tracking.MlflowClient()
    exp_id = tracking.ensure_experiment(experiment)
    grid = [(d, m, lr) for d in paper.DATASETS for m in paper.MODELS for lr in paper.LRS]
    now = int(time.time() * 1000)
    for i in range(count):
        dataset, model, lr = grid[i % len(grid)]
        run_id = client.create_run(exp_id, tags={tracking.KIND: "train"}).info.run_id
        params = {"dataset": dataset, "model": model, "optimizer": "adam", "lr": tracking.canonical(lr),
                  "seed": str(i // len(grid)), "batch_size": "128", "epochs": "200", "init": "glorot_uniform",
                  "shortcut": "A", "patience": "20"}
        metrics = {tracking.BASELINE_ACCURACY: 0.9 - i % 7 / 100, tracking.AVG_NORMALIZED_ACCURACY: 0.7 - i % 5 / 50}
        for eta in paper.ETAS:
            metrics[tracking.normalized_accuracy_eta(eta)] = 1 - eta
            metrics[tracking.normalized_accuracy_ci95_eta(eta)] = 0.01
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()])
        client.set_terminated(run_id)


def timed_report(experiment: str, out: str) -> float:
    start = time.perf_counter()
    report.build(experiment, out, set_alias=False)
    return time.perf_counter() - start


def main():
    small, large = (10, 100) if _common.quick() else (100, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        tracking.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        fill("runs100", small)
        fill("runs1000", large)
        timed_report("runs100", "warm-up")  # imports, font cache
        t100 = timed_report("runs100", "r100")
        t1000 = timed_report("runs1000", "r1000")
    return _common.record({"report_seconds_100": round(t100, 2), "report_seconds_1000": round(t1000, 2),
                           "report_growth_100_to_1000": round(t1000 / t100, 2)})


if __name__ == "__main__":
    main()
