"""The README's test command on this tree against an earlier commit, side by side on this machine in one run.

`python benchmarks/suite_time.py BASELINE_REF [--rounds N]`: checks BASELINE_REF out into a temporary git
worktree, then runs the README's test command (pytest -n 2 --dist loadfile) alternately on the baseline and on
this tree, N rounds (default 1), each in a fresh process with the tree's own `src` first on the path (the
baseline with pytest-randomly off, in its files' order), then this tree's unit part (`-m "not e2e"`).
Records the minimum wall seconds of each and their ratio. The suite needs the machine to itself: run it with
nothing else busy. ~15 minutes a round on 2 cores (not part of run_all.py).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile"]  # the README's


def run_suite(tree: Path, *extra: str) -> tuple[float, str]:
    """(wall seconds, pytest's closing line) of the test command in `tree`, its own `src` imported first."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(tree / "src")}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *SUITE, *extra], cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    closing = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    print(f"{tree.name}: {seconds:.0f} s, {closing[-1] if closing else proc.stdout[-500:]}", flush=True)
    return seconds, closing[-1] if closing else "no closing line"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="the git commit or ref to compare with")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.baseline], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="lrnoise-suite-") as tmp:
        baseline = Path(tmp) / f"baseline-{commit}"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(baseline), commit], cwd=ROOT, check=True, capture_output=True
        )
        try:
            times = {"baseline": [], "this tree": []}
            for _ in range(args.rounds):
                times["baseline"].append(run_suite(baseline, "-p", "no:randomly")[0])  # its files in order
                times["this tree"].append(run_suite(ROOT)[0])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False)
    unit, _ = run_suite(ROOT, "-m", "not e2e")
    base, new = min(times["baseline"]), min(times["this tree"])
    _common.record(
        {
            "suite_seconds": round(new, 1),
            "suite_seconds_baseline": round(base, 1),
            "suite_baseline_commit": commit,
            "suite_vs_baseline": round(new / base, 3),
            "suite_unit_seconds": round(unit, 1),
        }
    )


if __name__ == "__main__":
    main()
