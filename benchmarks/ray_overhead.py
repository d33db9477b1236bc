"""What Ray costs a study on one machine: the same grid (digits ResNet8 at 6 learning rates, 2 epochs, one
noise evaluation of one draw per level, no gradient-noise measurement, no report) run by two local worker
processes and by the Ray executor on a local Ray instance (two actors of one CPU each), each in a fresh sqlite
store, alternated local, ray, ray, local; the runs import a copy of src/ taken at the start. About 5 minutes on
2 cores.

Figures: ray_vs_local_workers = mean Ray wall / mean local wall, and ray_overhead_seconds_per_configuration =
(mean Ray wall - mean local wall) / configurations: Ray's start, its actors' start and its scheduling, per
configuration of this grid. `python ray_overhead.py`; LRNOISE_BENCH_QUICK=1: 2 configurations, 1 epoch.
"""

import statistics

import _common

LRS = "0.0005,0.001,0.002,0.003,0.004,0.005"
GRID = "--models resnet8 --optimizers adam --seeds 0 --trials 1 --etas 0.1 --noise additive --grad-noise-batches 0"
ORDER = ("local", "ray", "ray", "local")
EXECUTORS = {
    "local": ["--executor", "local", "--workers", "2"],
    "ray": ["--executor", "ray", "--cpus-per-training", "1"],
}


def main():
    lrs, epochs = ("0.001,0.002", "1") if _common.quick() else (LRS, "2")
    grid = ["--preset", "demo", "--lrs", lrs, "--epochs", epochs, "--no-report", *GRID.split()]
    seconds = _common.alternated_studies(ORDER, {name: grid + flags for name, flags in EXECUTORS.items()})
    local, ray = statistics.mean(seconds["local"]), statistics.mean(seconds["ray"])
    configurations = len(lrs.split(","))
    return _common.record(
        {
            "ray_study_seconds": round(ray, 1),
            "local_workers_study_seconds": round(local, 1),
            "ray_vs_local_workers": round(ray / local, 3),
            "ray_overhead_seconds_per_configuration": round((ray - local) / configurations, 2),
        }
    )


if __name__ == "__main__":
    main()
