"""Runs every benchmark (each in its own process) and writes benchmarks/results.json; about 8 minutes on
2 cores. `python benchmarks/run_all.py`; LRNOISE_BENCH_QUICK=1 runs every benchmark at tiny sizes (a smoke test
of the benchmark code; results go to a temp file, the numbers mean nothing)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import _common

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["noise_eval.py", "train_speed.py", "study_overhead.py", "report_speed.py", "memory.py",
              "server_latency.py"]
TARGETS = {  # key: (comparison, bound) from the issues; every key is required
    "train_ratio_vs_bare_fit": (">=", 0.90), "grad_noise_overhead": ("<=", 1.05), "pipeline_ratio": (">=", 3.0),
    "noise_draw_vs_clean_pass": ("<=", 1.10), "pcm_draw_vs_additive_draw": ("<=", 1.25),
    "noise_speedup_vs_naive": (">=", 1.4), "noise_speedup_vs_naive_1k": (">=", 3.0),
    "study_fixed_seconds_per_configuration": ("<=", 5.0),
    "report_seconds_1000": ("<=", 60.0), "report_growth_100_to_1000": ("<=", 10.0), "train_peak_rss_gib": ("<", 2.0),
}
INFORMATION = [  # required too, shown without a target
    "train_ratio_vs_bare_fit_measured", "grad_noise_overhead_measured", "first_epoch_vs_steady_epoch",
    "study_seconds_per_configuration", "study_fixed_seconds_after_first_configuration",
    "server_request_ms", "server_uvicorn_vs_lrnoise",
]
REQUIRED = [*TARGETS, *INFORMATION]


def verdict(key: str, value) -> str:
    """'>= 0.9 ok' / '<= 5.0 MISSED' for a targeted key, '—' for an information row."""
    if key not in TARGETS:
        return "—"
    op, bound = TARGETS[key]
    met = {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]
    return f"{op} {bound} {'ok' if met else 'MISSED'}"


def main():
    results_file = _common.results_path()
    results_file.unlink(missing_ok=True)
    for name in BENCHMARKS:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, str(HERE / name)], check=True, cwd=HERE)
        print(f"   ({time.perf_counter() - start:.0f}s)", flush=True)
    results = json.loads(results_file.read_text())
    missing = [k for k in REQUIRED if k not in results]
    if missing:
        raise SystemExit(f"missing results: {missing}")
    print(f"\n| figure | value | target |\n|---|---|---|")
    for key in REQUIRED:
        print(f"| {key} | {results[key]} | {verdict(key, results[key])} |")
    print(f"\nmachine: {results['machine']}")


if __name__ == "__main__":
    main()
