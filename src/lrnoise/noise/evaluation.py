"""The tracked noise evaluation (`lrnoise noise-eval`): find the training run, load its model and data,
evaluate one NoiseConfig (`injection.evaluate`), log the result as a child run of the training run. Draws no
figure and imports no matplotlib: a caller that wants noise_curve.png in the run passes `draw`
(lrnoise.report.evaluation_figure.write_noise_curve: the `noise-eval` command and a study do).
"""

from __future__ import annotations

from collections.abc import Callable

from lrnoise import names
from lrnoise.data import loading, sources
from lrnoise.errors import LrnoiseError
from lrnoise.noise import injection, noise_config
from lrnoise.store import leases, lookup, registry, run_logging, session


def noise_eval(
    config: noise_config.NoiseConfig,
    run_id: str | None = None,
    model_uri: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    experiment: str | None = None,
    batch_size: int = 1000,
    force: bool = False,
    model=None,
    loaded_data: loading.Dataset | None = None,
    evaluator=None,
    target: tuple | None = None,
    draw: Callable[[injection.NoiseResult, noise_config.NoiseConfig, str, str], object] | None = None,
) -> tuple[str, injection.NoiseResult]:
    """Evaluates a training run's model (or any model URI) under `config` in a noise-eval run, child of the
    training run. Returns (noise-eval run id, result). The summary is also written onto the training run.
    A model that did not learn (tag lrnoise.learned=false) is refused unless `force`. `model` /
    `loaded_data` / `evaluator`: the run's model, data and a_0 Evaluator already in memory (a study right after
    training). `target`: lookup.evaluation_target(run_id, model_uri, experiment, force), when the caller has
    checked it already. `draw(result, config, dataset, folder)`: writes figures into the run's artifact folder
    before it is logged (lrnoise.report.evaluation_figure.write_noise_curve); None: no figure."""
    config.validate()
    source, model_uri, exp_name = target or lookup.evaluation_target(run_id, model_uri, experiment, force)
    source_id = source.info.run_id if source is not None else None
    ds = loaded_data
    if ds is None:
        dataset = dataset or (lookup.dataset_of(source) if source is not None else None)
        if dataset is None:
            raise LrnoiseError(f"model {model_uri} comes from no lrnoise training run: pass --dataset")
        sources.require([dataset], data_dir)
        # scored on the test images its training run was scored on: the same subset, or the whole test set
        subset = None if source is None else lookup.test_examples_of(source)
        ds = loading.load(dataset, data_dir=data_dir, test_examples=subset)
    dataset = ds.name
    model = model if model is not None else registry.load_model(model_uri)
    if tuple(model.input_shape[1:]) != ds.input_shape:
        raise LrnoiseError(
            f"model {model_uri} takes inputs {model.input_shape[1:]}, {dataset} images are "
            f"{ds.input_shape}: pass the dataset it was trained on"
        )
    tags = {
        names.EVALUATED_MODEL: model_uri,
        names.NOISE_CONFIG: config.key,
        names.NOISE_CONFIG_NAME: config.name,
    }
    if source_id:
        tags[names.SOURCE_RUN_ID] = source_id
    run_name = f"{config.name}-{source.info.run_name if source else dataset}"
    elsewhere = run_logging.entry_point_elsewhere(session.ensure_experiment(exp_name))
    with (
        leases.run(exp_name, "noise_eval", parent_run_id=source_id, tags=tags, run_name=run_name),
        run_logging.temp_dir() as tmp,
    ):
        eval_run_id = run_logging.active_run_id()
        run_logging.log_params(config.params(), key=config.run_key)
        run_logging.log_datasets(ds.name, ds.source, {names.TEST_SPLIT: (ds.x_test, ds.y_test)})
        print(
            f"noise-eval run {eval_run_id} of {model_uri} on {dataset} ({len(ds.x_test)} test images), "
            f"configuration {config.name}"
        )
        result = injection.evaluate(model, ds.x_test, ds.y_test, config, batch_size, evaluator=evaluator)
        log_result(result, config, source_id, source.data.tags.get(names.MODEL_URI) if source else None)
        write_artifacts(result, tmp)
        if draw is not None:
            draw(result, config, dataset, tmp)
        run_logging.log_artifacts(tmp)
        if result.nonfinite_draws:
            print(f"{result.nonfinite_draws} draws gave non-finite outputs (counted as wrong predictions)")
        print(f"avg_normalized_accuracy {result.avg_normalized_accuracy:.4f}")
        print(f"run_id {eval_run_id}", flush=True)
    if elsewhere:  # `mlflow run`'s own run, in another experiment: it points at the evaluation
        session.client().set_tag(elsewhere, names.EVALUATION_RUN_ID, eval_run_id)
    return eval_run_id, result


def log_result(
    result: injection.NoiseResult,
    config: noise_config.NoiseConfig,
    train_run_id: str | None,
    train_model_uri: str | None = None,
) -> None:
    """Maps the result's columns onto lrnoise.names' metric names (the noise side knows its columns); the summary
    also goes onto the training run and its logged model (`train_model_uri`, models:/<model_id>)."""
    per_level = [
        (
            config.level_name,
            noise_config.level_label(config.level_name, row["level"]),
            {c: row[c] for c in injection.LOGGED_LEVEL_COLUMNS},
        )
        for row in result.summary.to_dict("records")
    ]
    run_metrics = {
        names.BASELINE_ACCURACY: result.baseline_accuracy,
        names.AVG_NORMALIZED_ACCURACY: result.avg_normalized_accuracy,
        names.NONFINITE_DRAWS: result.nonfinite_draws,
    }
    run_logging.log_noise_result(
        run_metrics,
        per_level,
        ("normalized_accuracy", "normalized_accuracy_ci95"),
        train_run_id,
        names.summary_prefix(config.name, config.is_paper),
        registry.logged_model_id(train_model_uri) if train_model_uri else None,
    )


def write_artifacts(result: injection.NoiseResult, folder: str) -> None:
    """draws.csv (every draw) and summary.csv (per level); the figure is the caller's `draw`."""
    draws = result.draws.assign(normalized_accuracy=result.draws["accuracy"] / result.baseline_accuracy)
    draws.to_csv(f"{folder}/draws.csv", index=False)
    result.summary.to_csv(f"{folder}/summary.csv", index=False)
