"""Shared benchmark helpers: CIFAR-shaped synthetic data, timing, and the results file."""
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
RESULTS = Path(__file__).with_name("results.json")


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


def machine():
    import keras
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, keras {keras.__version__} " \
           f"backend {keras.backend.backend()}"


def record(values: dict):
    """Merges `values` into benchmarks/results.json (with the machine) and prints them."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update(values)
    results["machine"] = machine()
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    for key, value in values.items():
        print(f"{key:32s} {value}")
