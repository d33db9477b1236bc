"""Every refusal is one line: each bad invocation below exits with status 2, prints exactly one line naming what
was wrong (and, for a value, what is allowed), imports no TensorFlow, and leaves the tracking store exactly as it
was (no experiment, run, param, tag or metric made). All cases run in one process, in order, against a store
holding one finished training run (`RUN`), so a case that imported TensorFlow is the first one that shows it."""

import contextlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from lrnoise import names

RUN = "@RUN"  # stands for the finished training run's id
TRAIN = [
    (["train", "--seed", "-1"], "seed must be >= 0"),
    (["train", "--lr", "0"], "lr must be a finite number > 0"),
    (["train", "--lr", "inf"], "lr must be a finite number > 0"),
    (["train", "--lr", "-1"], "lr must be a finite number > 0"),
    (["train", "--lr", "abc"], "Invalid value for '--lr'"),
    (["train", "--dataset", "mnist"], "unknown dataset 'mnist': choose one of digits"),
    (["train", "--model", "resnet18"], "unknown model 'resnet18': choose one of resnet8"),
    (["train", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop': choose one of sgd"),
    (["train", "--batch-size", "0"], "batch_size must be >= 1"),
    (["train", "--epochs", "0"], "epochs must be >= 1"),
    (["train", "--patience", "-1"], "patience must be >= 0"),
    (["train", "--shortcut", "C"], "unknown shortcut 'C': choose one of A, B"),
    (["train", "--train-noise", "-0.1"], "train_noise must be an eta between 0"),
    (["train", "--train-noise", "2"], "train_noise must be an eta between 0"),
    (["train", "--train-examples", "1439"], "train_examples must be from 1 to 1438 (the digits training set)"),
    (["train", "--test-examples", "0"], "test_examples must be from 1 to 359 (the digits test set)"),
    (["train", "--train-examples", "many"], "--train-examples must be"),
    (["train", "--budget", "months"], "unknown budget 'months': choose one of epochs, steps"),
    (["train", "--budget", "steps"], "patience must be 0"),
    (["train", "--budget", "steps", "--patience", "0", "--reference-batch-size", "0"], "reference_batch_size must be"),
    (["train", "--reference-batch-size", "64"], "reference_batch_size is for budget steps: add --budget steps"),
    (["train", "--mixed-precision", "fp8"], "unknown mixed precision 'fp8': choose one of none, bf16, fp16"),
    (["train", "--steps-per-execution", "0"], "steps_per_execution must be >= 1"),
    (["train", "--grad-noise-batches", "1"], "grad_noise_batches must be 0 (off) or >= 2"),
    (["train", "--grad-noise-batches", "-1"], "grad_noise_batches must be 0 (off) or >= 2"),
    (["train", "--checkpoint-every", "-1"], "checkpoint_every must be a finite number of seconds >= 0"),
    (["train", "--checkpoint-every", "nan"], "checkpoint_every must be a finite number of seconds >= 0"),
    (["train", "--resume", RUN, "--lr", "5"], "--resume continues the run's own configuration: drop --lr"),
    (["train", "--resume", "0123456789abcdef0123456789abcdef"], "0123456789abcdef0123456789abcdef"),
    (["train", "--nope"], "No such option: --nope"),
]
NOISE_EVAL = [
    (["noise-eval"], "give exactly one of --run-id (a training run) or --model-uri"),
    (["noise-eval", "--run-id", RUN, "--model-uri", "models:/x/1"], "give exactly one of --run-id"),
    (["noise-eval", "--model-uri", "s3://bucket/model"], "must look like models:/<name>/<version>"),
    (["noise-eval", "--run-id", RUN, "--noise", "thermal"], "unknown noise 'thermal': choose one of additive"),
    (["noise-eval", "--run-id", RUN, "--levels", "-0.1"], "level eta must be a fraction from 0 to 1"),
    (["noise-eval", "--run-id", RUN, "--levels", "10"], "level eta must be a fraction from 0 to 1 (0.1 = 10 %)"),
    (["noise-eval", "--run-id", RUN, "--levels", "0.1,0.1"], "levels repeat a value"),
    (["noise-eval", "--run-id", RUN, "--levels", "0.1,lots"], "--levels must be a comma-separated list"),
    (["noise-eval", "--run-id", RUN, "--noise", "pcm", "--levels", "-1"], "level t must be a finite number"),
    (["noise-eval", "--run-id", RUN, "--targets", "everything"], "unknown targets 'everything': choose one of"),
    (["noise-eval", "--run-id", RUN, "--noise-option", "g_max"], "--noise-option must be NAME=VALUE pairs"),
    (["noise-eval", "--run-id", RUN, "--noise-option", "g_max=lots"], "--noise-option g_max must be a number"),
    (["noise-eval", "--run-id", RUN, "--noise", "pcm", "--noise-option", "bogus=1"], "unknown option 'bogus'"),
    (["noise-eval", "--run-id", RUN, "--noise-option", "g_max=10"], "unknown option 'g_max' for noise additive"),
    (["noise-eval", "--run-id", RUN, "--trials", "0"], "trials must be an integer >= 1 or 'auto'"),
    (["noise-eval", "--run-id", RUN, "--trials", "many"], "trials must be an integer >= 1 or 'auto'"),
    (["noise-eval", "--run-id", RUN, "--trials", "auto", "--ci-target", "2"], "trials auto needs 0 < ci_target < 1"),
    (["noise-eval", "--run-id", RUN, "--trials", "auto", "--max-trials", "1"], "max_trials >= 3"),
    (["noise-eval", "--run-id", RUN, "--batch-size", "0"], "batch size must be >= 1"),
    (["noise-eval", "--run-id", RUN, "--ci-target", "0.01"], "ci_target and max_trials are for trials auto"),
    (["noise-eval", "--run-id", RUN, "--max-trials", "50"], "ci_target and max_trials are for trials auto"),
    (["noise-eval", "--run-id", RUN, "--dataset", "mnist"], "unknown dataset 'mnist': choose one of digits"),
    (["noise-eval", "--run-id", RUN, "--experiment", "elsewhere"], "drop --experiment"),
    (["noise-eval", "--run-id", "0123456789abcdef0123456789abcdef"], "0123456789abcdef0123456789abcdef"),
    (["noise-eval", "--run-id", RUN, "--seed", "x"], "Invalid value for '--seed'"),
]
REPORT = [
    (["report", "--experiment", "nosuch"], "nosuch"),
    (["report", "--dataset", "mnist"], "unknown dataset 'mnist': choose one of digits"),
    (["report", "--model", "resnet18"], "unknown model 'resnet18'"),
    (["report", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
    (["report", "--noise-config", "bogus"], "bogus"),
    (["report", "--max-accuracy-drop", "-0.1"], "max accuracy drop must be a fraction >= 0 and < 1"),
    (["report", "--max-accuracy-drop", "x"], "Invalid value for '--max-accuracy-drop'"),
    (["report", "--target-accuracy", "2"], "target accuracy must be a fraction between 0 and 1"),
]
STUDY = [
    (["study", "--preset", "huge"], "unknown preset 'huge': choose one of paper"),
    (["study", "--preset", "fashion", "--datasets", "digits"], "train_examples must be from 1 to 1438"),
    (["study", "--models", "resnet18"], "unknown model 'resnet18'"),
    (["study", "--datasets", "mnist"], "unknown dataset 'mnist'"),
    (["study", "--lrs", "0.1,fast"], "--lrs must be a comma-separated list"),
    (["study", "--lrs", " , "], "--lrs is empty"),
    (["study", "--lrs", "-0.1"], "lr must be a finite number > 0"),
    (["study", "--etas", "-0.1"], "level eta must be a fraction from 0 to 1"),
    (["study", "--etas", "10"], "level eta must be a fraction from 0 to 1"),
    (["study", "--times", "-1"], "level t must be a finite number"),
    (["study", "--trials", "0"], "trials must be an integer >= 1 or 'auto'"),
    (["study", "--noise", "thermal"], "unknown noise 'thermal'"),
    (["study", "--workers", "0"], "workers must be >= 1"),
    (["study", "--workers", "many"], "--workers must be a whole number"),
    (["study", "--executor", "slurm"], "unknown executor 'slurm': choose one of local, ray"),
    (["study", "--reuse", "some"], "unknown reuse 'some': choose one of same, any"),
    (["study", "--ray-address", "127.0.0.1:6379"], "--ray-address is for --executor ray only"),
    (["study", "--cpus-per-training", "2"], "--cpus-per-training is for --executor ray only"),
    (["study", "--ray-runtime-env", "{}"], "--ray-runtime-env is for --executor ray only"),
    (["study", "--executor", "ray", "--ray-address", "a cluster"], "ray address must be auto, HOST:PORT"),
    (["study", "--executor", "ray", "--ray-runtime-env", "[1]"], "ray runtime env must be a JSON object"),
    (["study", "--gpus-per-training", "0.3"], "gpus per training must be 0, a whole number, or a fraction 1/k"),
    (["study", "--lease-timeout", "0"], "lease timeout must be > 0 seconds"),
    (["study", "--lease-timeout", "nan"], "lease timeout must be > 0 seconds"),
    (["study", "--batch-size", "8", "--batch-sizes", "16"], "give either --batch-size or --batch-sizes"),
    (["study", "--budget", "steps", "--patience", "3"], "patience must be 0"),
    (["study", "--reference-batch-size", "64"], "reference_batch_size is for budget steps"),
    (["study", "--epochs", "ten"], "--epochs must be a whole number"),
    (["study", "--seeds", "0,1.5"], "--seeds must be a comma-separated list"),
    (["study", "--mixed-precision", "fp8"], "unknown mixed precision 'fp8'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
]
CASES = TRAIN + NOISE_EVAL + REPORT + STUDY

# Run in a fresh process: each case through `lrnoise`'s own entry point (cli.main), one after another.
RUNNER = """
import contextlib, io, json, sys
from lrnoise import cli
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    sys.argv, code = ["lrnoise", *argv], None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main()
        except SystemExit as stop:
            code = stop.code
    results.append({"code": code, "output": out.getvalue() + err.getvalue(), "tensorflow": "tensorflow" in sys.modules})
print(json.dumps(results))
"""


def snapshot(db) -> tuple:
    """Everything a command could have written: experiments, runs and their params, tags and metrics, models."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        tables = ("experiments", "runs", "params", "tags", "metrics", "registered_models", "logged_models")
        return tuple(con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in tables)


@pytest.fixture(scope="module")
def refused(tmp_path_factory, migrated_store):
    """{case index: (exit code, output lines, tensorflow imported)} and the store before and after."""
    import mlflow

    from support.stores import new_store

    folder = tmp_path_factory.mktemp("refusals")
    uri = new_store(migrated_store, folder / "mlflow.db")
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment(names.DEFAULT_EXPERIMENT, artifact_location=str(folder / "artifacts"))
    run = client.create_run(experiment, tags={names.KIND: "train", names.MODEL_URI: "models:/m-0123"})
    client.log_param(run.info.run_id, names.DATASET_PARAM, "digits")
    client.set_terminated(run.info.run_id)
    before = snapshot(folder / "mlflow.db")
    cases = [[run.info.run_id if arg == RUN else arg for arg in argv] for argv, _ in CASES]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(cases)], capture_output=True, text=True, env=env, cwd=folder
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.splitlines()[-1])
    return results, before, snapshot(folder / "mlflow.db")


def test_the_table_covers_every_command_with_sixty_cases_or_more():
    assert len(CASES) >= 60 and {argv[0] for argv, _ in CASES} >= {"train", "noise-eval", "report", "study"}


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(CASES)), ids=[" ".join(argv) for argv, _ in CASES])
def test_a_bad_invocation_is_one_line_with_status_2_before_tensorflow(refused, case):
    results, _, _ = refused
    found, expected = results[case], CASES[case][1]
    lines = found["output"].strip().splitlines()
    assert found["code"] == 2 and len(lines) == 1, found["output"]
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert not found["tensorflow"], "this case (or one before it) imported TensorFlow"


@pytest.mark.slow
def test_no_refusal_changed_the_store(refused):
    _, before, after = refused
    assert before == after
