"""lrnoise and `mlflow run` in a process of their own, as a user runs them."""

import subprocess
import sys

from support import ROOT


def study_cmd(lrs: str, *extra: str) -> list[str]:
    """A small study of `lrs` in its own process: ResNet8s without the gradient-noise measurement (what is tested
    is who runs which configuration, not training)."""
    options = (
        "--models resnet8 --optimizers adam --seeds 0 --trials 1 --etas 0.1 --noise additive --batch-size 128 "
        "--grad-noise-batches 0 --no-report --workers 1"
    )
    return [sys.executable, "-m", "lrnoise.cli", "study", "--lrs", lrs, *options.split(), *extra]


def mlflow_run(
    entry: str, *params: str, timeout: float = 600, experiment: str | None = "lrnoise"
) -> subprocess.CompletedProcess:
    """`mlflow run` of this repository's entry point `entry` in the local environment, into `experiment` (None:
    no --experiment-name, so MLflow's Default), with `params` ("name=value") as its -P inputs; stdout and stderr
    captured as text."""
    cmd = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", entry, "--env-manager", "local"]
    cmd += ["--experiment-name", experiment] if experiment else []
    for param in params:
        cmd += ["-P", param]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
