"""Tracking stores for tests: a fresh copy of the migrated SQLite store, and the runs in one."""

import contextlib
import shutil
import sqlite3
from pathlib import Path

from lrnoise import names


def new_store(migrated: Path, path: Path) -> str:
    """A fresh store at `path`, copied from the migrated empty one, its Default experiment's artifacts beside it
    (as a store made there would have them); returns its URI."""
    shutil.copyfile(migrated, path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(path.parent / "mlruns" / "0"),)
        )
    return f"sqlite:///{path}"


def runs_of(kind: str, experiment: str = "lrnoise") -> list:
    """Every run of lrnoise kind `kind` (train, noise_eval, study, claim, ...) in `experiment`."""
    import mlflow

    return [
        r
        for r in mlflow.search_runs(
            experiment_names=[experiment], output_format="list", filter_string=f"tags.`{names.KIND}` = '{kind}'"
        )
    ]


def run_statuses(experiment="lrnoise"):
    """{run_id: status} of every run in `experiment` (all lifecycle stages)."""
    import mlflow

    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    return {r.info.run_id: r.info.status for r in client.search_runs([exp.experiment_id], max_results=1000)}


def one_finished_of_each(lrs) -> None:
    """Exactly one FINISHED training per lr, one FINISHED evaluation per training, nothing RUNNING."""
    trains = [r for r in runs_of("train") if r.info.status == "FINISHED"]
    assert sorted(float(r.data.params["lr"]) for r in trains) == sorted(lrs)  # one FINISHED training per lr
    evals = [r for r in runs_of("noise_eval") if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["source_run_id"] for r in evals) == sorted(r.info.run_id for r in trains)
    assert "RUNNING" not in run_statuses().values()
