"""Runs every benchmark (each in its own process) and writes benchmarks/results.json; about 5 minutes on
2 cores. `python benchmarks/run_all.py`"""
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["noise_eval.py", "train_speed.py", "report_speed.py", "memory.py"]
REQUIRED = ["train_ratio_vs_bare_fit", "pipeline_ratio", "noise_draw_vs_clean_pass", "noise_speedup_vs_naive",
            "noise_speedup_vs_naive_1k", "report_seconds_1000", "report_growth_100_to_1000", "train_peak_rss_gib"]
TARGETS = {  # key: (comparison, bound) from the issues
    "train_ratio_vs_bare_fit": (">=", 0.90), "pipeline_ratio": (">=", 3.0), "noise_draw_vs_clean_pass": ("<=", 1.10),
    "noise_speedup_vs_naive": (">=", 1.4), "noise_speedup_vs_naive_1k": (">=", 3.0),
    "report_seconds_1000": ("<=", 60.0), "report_growth_100_to_1000": ("<=", 10.0), "train_peak_rss_gib": ("<", 2.0),
}


def main():
    results_file = HERE / "results.json"
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
        op, bound = TARGETS[key]
        value = results[key]
        met = {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]
        print(f"| {key} | {value} | {op} {bound} {'ok' if met else 'MISSED'} |")
    print(f"\nmachine: {results['machine']}")


if __name__ == "__main__":
    main()
