"""Shared benchmark helpers: CIFAR-shaped synthetic data, timing, and the results file."""

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
RESULTS = Path(__file__).with_name("results.json")
QUICK_ENV = "LRNOISE_BENCH_QUICK"  # =1: tiny sizes, a smoke test of the benchmark code (numbers mean nothing)


def quick() -> bool:
    """True when LRNOISE_BENCH_QUICK=1: benchmarks shrink their sizes and record into a temp file instead."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def cifar_like(n, seed=0, classes=10):
    """n random uint8 32x32x3 images and labels: the shapes of CIFAR10, no download needed."""
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.randint(0, classes, n)


def best_of(fn, repeats):
    """Minimum wall time of `repeats` calls (after one warm-up call): the least-disturbed measurement."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def best_of_each(fns: dict, repeats: int) -> dict:
    """{name: minimum wall time} of several callables timed in alternating rounds (after one warm-up call of
    each), so a change in machine load during the measurement hits all of them alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def _cpu() -> str:
    """The CPU model and its widest vector unit, e.g. 'AMD EPYC, AVX2 only (no AVX-512)': two such machines with
    the same model name ran this project's figures differently."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        return model
    vector = "AVX-512" if "avx512f" in flags else "AVX2 only (no AVX-512)" if "avx2" in flags else "no AVX2"
    return f"{model}, {vector}"


def machine():
    import keras

    return f"{_cpu()}, {os.cpu_count()} cores, keras {keras.__version__} backend {keras.backend.backend()}"


def results_path() -> Path:
    """benchmarks/results.json, or a file in the temp folder in quick mode (smoke numbers never land in the repo)."""
    return Path(tempfile.gettempdir()) / "lrnoise-benchmarks-quick.json" if quick() else RESULTS


def record(values: dict):
    """Merges `values` into results_path() with the machine they were measured on ("machine_of": figure ->
    machine; "machine": the latest run's) and when ("measured_at": figure -> unix time), and prints them. A figure
    is replaced when it is measured again; nothing else in the file changes."""
    path = results_path()
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(values)
    results["machine"] = machine()
    results.setdefault("machine_of", {}).update({key: results["machine"] for key in values})
    results.setdefault("measured_at", {}).update({key: round(time.time()) for key in values})
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    for key, value in values.items():
        print(f"{key:32s} {value}")


SRC = Path(__file__).resolve().parent.parent / "src"


def snapshot_src(folder: str) -> str:
    """A copy of src/ in `folder`, for benchmark subprocesses to import (PYTHONPATH): editing the tree while a
    long benchmark runs changes nothing it measures."""
    import shutil

    return shutil.copytree(SRC, Path(folder) / "src")


def alternated_studies(order: tuple, arguments: dict, env: dict | None = None, label: str = "") -> dict:
    """{name: [wall seconds]} of `lrnoise study` runs in `order` (names of `arguments`: name -> the study's
    arguments), each in a fresh sqlite store in its own temporary folder, importing lrnoise from a copy of src/
    taken first (snapshot_src); `env`: name -> extra environment of that name's runs."""
    import subprocess
    import sys

    seconds = {name: [] for name in arguments}
    with tempfile.TemporaryDirectory(prefix="lrnoise-bench-src-") as snapshot:
        src = str(snapshot_src(snapshot))
        for name in order:
            with tempfile.TemporaryDirectory(prefix="lrnoise-bench-") as folder:
                run_env = {
                    **os.environ,
                    "PYTHONPATH": src,
                    "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
                    **(env or {}).get(name, {}),
                }
                command = [sys.executable, "-m", "lrnoise.cli", "study", *arguments[name]]
                started = time.perf_counter()
                subprocess.run(command, cwd=folder, env=run_env, check=True, stdout=subprocess.DEVNULL)
                seconds[name].append(time.perf_counter() - started)
            print(f"{label}{name}: {seconds[name][-1]:.1f} s", flush=True)
    return seconds
