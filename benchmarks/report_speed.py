"""Report speed: seconds to build and write every table and figure (every noise configuration) from a tracking
store holding 100 and 1,000 finished training runs, each with the two noise evaluations a study makes by default
(the paper's additive configuration and PCM, as child runs), logged as lrnoise logs them; and the growth between
the two. Filling the store (3,300 runs) takes most of this benchmark's ~2.5 minutes; only the report is timed.
Targets: 1,000 runs in under 60 s on 2 cores; growth no worse than linear (ratio <= 10).
LRNOISE_BENCH_QUICK=1: 10 and 100 runs (still recorded under the 100 / 1000 keys: a smoke test only)."""

import os
import tempfile
import time

import mlflow
from mlflow.entities import Metric, Param, RunTag

from lrnoise import names, paper
from lrnoise.noise import noise_config
from lrnoise.report import assembly
from lrnoise.settings import ReportSettings
from lrnoise.store import session

import _common

NOISE_CONFIGS = (noise_config.PAPER, noise_config.NoiseConfig("pcm"))  # a study's default noise configurations


def noise_metrics(config: noise_config.NoiseConfig, index: int) -> tuple[dict, dict]:
    """(the noise-eval run's metrics, the summary written onto the training run), names as
    noise_eval.log_result writes them; made-up values falling with the level."""
    prefix = names.summary_prefix(config.name, config.is_paper)
    a_avr = 0.7 - index % 5 / 50
    run = {names.BASELINE_ACCURACY: 0.9, names.AVG_NORMALIZED_ACCURACY: a_avr, names.NONFINITE_DRAWS: 0}
    summary = {prefix + names.AVG_NORMALIZED_ACCURACY: a_avr}
    for k, level in enumerate(config.levels):
        label = noise_config.level_label(config.level_name, level)
        normalized = 1 - k / (2 * len(config.levels))
        values = {
            "accuracy": 0.9 * normalized,
            "accuracy_std": 0.01,
            "accuracy_ci95": 0.01,
            "normalized_accuracy": normalized,
            "normalized_accuracy_ci95": 0.01,
            "trials": 10,
        }
        for column, value in values.items():
            name = names.level_metric(column, config.level_name, label)
            run[name] = value
            if column in ("normalized_accuracy", "normalized_accuracy_ci95"):
                summary[prefix + name] = value
    return run, summary


def fill(experiment: str, count: int) -> None:
    """`count` finished training runs over the paper's grid, each with its noise evaluations (child runs)."""
    client = mlflow.tracking.MlflowClient()
    exp_id = session.ensure_experiment(experiment)
    grid = [(d, m, lr) for d in paper.DATASETS for m in paper.MODELS for lr in paper.LRS]
    now = int(time.time() * 1000)
    for i in range(count):
        dataset, model, lr = grid[i % len(grid)]
        run_id = client.create_run(exp_id, tags={names.KIND: "train"}).info.run_id
        params = {
            "dataset": dataset,
            "model": model,
            "optimizer": "adam",
            "lr": names.canonical(lr),
            "seed": str(i // len(grid)),
            "batch_size": "128",
            "epochs": "200",
            "init": "glorot_uniform",
            "shortcut": "A",
            "patience": "20",
        }
        metrics = {names.BASELINE_ACCURACY: 0.9 - i % 7 / 100, names.GRAD_NOISE_POWER_MEAN: 1e-6 * (1 + i % 3)}
        for config in NOISE_CONFIGS:
            eval_metrics, summary = noise_metrics(config, i)
            metrics.update(summary)
            tags = {
                names.KIND: "noise_eval",
                names.SOURCE_RUN_ID: run_id,
                "mlflow.parentRunId": run_id,
                names.NOISE_CONFIG: config.key,
                names.NOISE_CONFIG_NAME: config.name,
            }
            eval_id = client.create_run(exp_id, tags=tags).info.run_id
            eval_params = names.noise_params({**config.measured(), **config.precision()})
            client.log_batch(
                eval_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in eval_metrics.items()],
                params=[Param(k, names.canonical(v)) for k, v in eval_params.items()],
                tags=[RunTag(names.CONFIG_KEY, config.run_key)],
            )
            client.set_terminated(eval_id)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        client.set_terminated(run_id)


def timed_report(experiment: str, out: str) -> float:
    start = time.perf_counter()
    assembly.build_and_write(
        ReportSettings(experiment, out=str(out), noise_config="all"), log_run=False, set_alias=False
    )
    return time.perf_counter() - start


def main():
    small, large = (10, 100) if _common.quick() else (100, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        session.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        fill("runs100", small)
        fill("runs1000", large)
        timed_report("runs100", "warm-up")  # imports, font cache
        t100 = timed_report("runs100", "r100")
        t1000 = timed_report("runs1000", "r1000")
    return _common.record(
        {
            "report_seconds_100": round(t100, 2),
            "report_seconds_1000": round(t1000, 2),
            "report_growth_100_to_1000": round(t1000 / t100, 2),
        }
    )


if __name__ == "__main__":
    main()
