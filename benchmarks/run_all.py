"""Runs every benchmark (each in its own process), merges their figures into benchmarks/results.json (a figure is
replaced when measured again; the calibration and suite figures, which run_all does not measure, stay) and
regenerates the figures table of benchmarks/README.md; about 30 minutes on 2 cores. `python benchmarks/run_all.py`;
LRNOISE_BENCH_QUICK=1 runs every benchmark at tiny sizes (a smoke test of the benchmark code; results go to a
temp file, the numbers mean nothing)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import table

import _common

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "noise_eval.py",
    "train_speed.py",
    "train_noise.py",
    "study_overhead.py",
    "report_speed.py",
    "memory.py",
    "server_latency.py",
    "fastpath.py",
    "ray_overhead.py",
]
TARGETS = {key: target for key, (_, target) in table.FIGURES.items() if target}  # key: (comparison, bound)
INFORMATION = [  # required too, shown without a target
    "train_ratio_vs_bare_fit_measured",
    "grad_noise_overhead_measured",
    "first_epoch_vs_steady_epoch",
    "study_seconds_per_configuration",
    "study_fixed_seconds_after_first_configuration",
    "server_request_ms",
    "server_uvicorn_vs_lrnoise",
]
REQUIRED = [*TARGETS, *INFORMATION]


def main():
    results_file = _common.results_path()
    started = time.time() - 1
    for name in BENCHMARKS:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, str(HERE / name)], check=True, cwd=HERE)
        print(f"   ({time.perf_counter() - start:.0f}s)", flush=True)
    results = json.loads(results_file.read_text())
    measured = results.get("measured_at", {})
    missing = [k for k in REQUIRED if measured.get(k, 0) < started]
    if missing:
        raise SystemExit(f"not measured by this run: {missing}")
    if not _common.quick():
        table.main()  # benchmarks/README.md's figures
    print(table.tables(results))


if __name__ == "__main__":
    main()
