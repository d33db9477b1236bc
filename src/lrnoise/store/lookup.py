"""Finding the runs a command builds on: a training run to resume, the training run or model a noise
evaluation targets (every refusal made before anything heavy loads), and the runs of a configuration, the
searches behind "already ran?" (leases.py holds the rule)."""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from lrnoise import names
from lrnoise.config import TrainConfig
from lrnoise.errors import LrnoiseError
from lrnoise.store import registry, semantics, session


def resumable_training(run_id: str):
    """Training run `run_id`, or a one-line error if it is not an unfinished lrnoise training run."""
    run = session.get_run(run_id)
    if run.info.status == "FINISHED":
        raise LrnoiseError(f"run {run_id} already finished: nothing to resume")
    if run.data.tags.get(names.KIND) != "train":
        raise LrnoiseError(f"run {run_id} is not a training run of lrnoise")
    return run


def dataset_of(train_run) -> str | None:
    """The dataset a training run trained on (its `dataset` param)."""
    return train_run.data.params.get(names.DATASET_PARAM)


def test_examples_of(train_run) -> int | None:
    """The test subset a training run was scored on (its `test_examples` param), None for the whole test set."""
    return TrainConfig.from_params(train_run.data.params).test_examples


def learned(train_run) -> bool:
    """False when the training run was tagged as not having learned (a_0 not above chance)."""
    return train_run.data.tags.get(names.LEARNED, "true") != "false"


def source_of(run_id: str | None = None, model_uri: str | None = None):
    """The lrnoise training run behind a run id or a model URI, or None for a model from elsewhere."""
    if run_id:
        run = session.get_run(run_id)
        if run.data.tags.get(names.KIND) != "train":
            raise LrnoiseError(
                f"run {run_id} is not an lrnoise training run (kind "
                f"{run.data.tags.get(names.KIND, 'none')!r}): pass a training run id"
            )
        if run.info.status != "FINISHED":
            raise LrnoiseError(f"training run {run_id} is {run.info.status}, not FINISHED: resume it first")
        return run
    if not str(model_uri).startswith(("models:/", "runs:/")):
        raise LrnoiseError(
            f"model URI {model_uri!r} must look like models:/<name>/<version>, "
            "models:/<name>@<alias> or models:/<model_id>"
        )
    try:
        source_id = mlflow.models.get_model_info(model_uri).run_id
    except MlflowException as exc:
        raise LrnoiseError(f"cannot find model {model_uri!r}: {exc.message.splitlines()[0]}") from None
    except OSError as exc:
        raise LrnoiseError(f"cannot find model {model_uri!r}: {exc}") from None
    if not source_id:
        return None
    run = session.get_run(source_id)
    return run if run.data.tags.get(names.KIND) == "train" else None


def evaluation_target(run_id: str | None, model_uri: str | None, experiment: str | None, force: bool) -> tuple:
    """(the training run or None, the model URI, the experiment name) a noise evaluation of `run_id` or
    `model_uri` goes to, with every refusal made now, before the model and data load (and before the noise code
    is imported): not exactly one of the two, no such run or model, a model that did not learn (unless `force`),
    a user who may not write the experiment (by default the training run's)."""
    if bool(run_id) == bool(model_uri):
        raise LrnoiseError("give exactly one of --run-id (a training run) or --model-uri (models:/...)")
    source = source_of(run_id=run_id, model_uri=model_uri)  # training run or None
    if run_id:
        model_uri = registry.model_uri_of_run(run_id, run=source)
    if source is not None and not force and not learned(source):
        raise LrnoiseError(
            f"training run {source.info.run_id} did not learn (test accuracy not above chance): "
            "its noise resistance means nothing; pass --force to evaluate it anyway"
        )
    # an evaluation of a training run goes where the report finds it: the training run's experiment
    home = session.experiment_name(source.info.experiment_id) if source else None
    if home is not None and experiment not in (None, home):
        raise LrnoiseError(
            f"an evaluation is logged into its training run's experiment {home!r} (where `report` finds it): "
            "drop --experiment"
        )
    name = home or experiment or names.DEFAULT_EXPERIMENT
    session.ensure_experiment(name)  # a READ-only user is refused here
    return source, model_uri, name


def runs_with_config(
    experiment_id: str, kind: str, key: str, source_run_id: str | None = None, same_semantics: bool = False
) -> list:
    """Every run (any status, not deleted) of `kind` with configuration key `key`, newest first; with
    `same_semantics`, only those made under this code's semantics number for `kind`."""
    clauses = [f"tags.`{names.KIND}` = '{kind}'", f"tags.`{names.CONFIG_KEY}` = '{key}'"]
    if source_run_id:
        clauses.append(f"tags.`{names.SOURCE_RUN_ID}` = '{source_run_id}'")
    if same_semantics:
        clauses.append(f"tags.`{names.SEMANTICS}` = '{semantics.SEMANTICS_OF[kind]}'")
    runs = session.search_runs([experiment_id], " and ".join(clauses), finished_only=False)
    return sorted(runs, key=lambda r: r.info.start_time, reverse=True)


def finished_semantics(experiment_id: str, kind: str) -> list[tuple[str, str | None, str, int]]:
    """(configuration key, source run id or None, run id, semantics number) of every FINISHED run of `kind`,
    newest first (all pages, one search): what a study can reuse, read once before it runs."""
    runs = session.search_runs([experiment_id], f"tags.`{names.KIND}` = '{kind}'")
    runs = sorted(runs, key=lambda r: r.info.start_time, reverse=True)
    return [
        (
            r.data.tags.get(names.CONFIG_KEY, ""),
            r.data.tags.get(names.SOURCE_RUN_ID),
            r.info.run_id,
            semantics.run_semantics(r),
        )
        for r in runs
    ]
