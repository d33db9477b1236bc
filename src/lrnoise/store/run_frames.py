"""Runs read back from the store as values: every finished training run and noise evaluation of an experiment
as one typed row each (all pages, one search), the frames the report, the statistics and the notebook read."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from lrnoise import names
from lrnoise.config import TrainConfig
from lrnoise.store import semantics, session

if TYPE_CHECKING:
    import pandas as pd


def train_runs_frame(experiment_id: str, param_filters: dict) -> pd.DataFrame:
    """Every finished training run of the experiment (all pages, one search), one typed row each: run_id, the
    TrainConfig's fields as their types (a field the run did not log takes its default: train_noise 0 for a
    clean run), `learned`, its configuration key and semantics number, and its metrics. The one way runs come
    back from the store as values; report, stats, figures and the notebook read this frame."""
    import pandas as pd

    clauses = [f"tags.`{names.KIND}` = 'train'"] + [f"params.{k} = '{v}'" for k, v in param_filters.items()]
    rows = []
    for run in session.search_runs([experiment_id], " and ".join(clauses)):
        rows.append(
            {
                "run_id": run.info.run_id,
                **dataclasses.asdict(TrainConfig.from_params(run.data.params)),
                "learned": run.data.tags.get(names.LEARNED, "true") != "false",
                "config_key": run.data.tags.get(names.CONFIG_KEY, run.info.run_id),
                "semantics": semantics.run_semantics(run),
                **run.data.metrics,
            }
        )
    columns = ["run_id", *names.TRAIN_PARAMS, "learned", "config_key", "semantics"]
    return pd.DataFrame(rows, columns=columns if not rows else None)


def noise_runs_frame(experiment_id: str) -> pd.DataFrame:
    """Every finished noise evaluation of a training run (all pages, one search): its source run, its
    configuration (key, name, and its noise.* params as logged), its run key (configuration and precision) and
    semantics number, and metrics."""
    import pandas as pd

    rows = []
    for run in session.search_runs([experiment_id], f"tags.`{names.KIND}` = 'noise_eval'"):
        source = run.data.tags.get(names.SOURCE_RUN_ID)
        if not source or names.NOISE_CONFIG not in run.data.tags:
            continue  # a bare model URI's evaluation, or one from before configurations had keys
        noise_params = {k: v for k, v in run.data.params.items() if k.startswith(names.NOISE_PARAM_PREFIX)}
        rows.append(
            {
                "eval_run_id": run.info.run_id,
                "run_id": source,
                "noise_config": run.data.tags[names.NOISE_CONFIG],
                "noise_config_name": run.data.tags.get(names.NOISE_CONFIG_NAME, ""),
                "noise_params": noise_params,  # as logged: NoiseConfig.from_params reads them
                "run_key": run.data.tags.get(names.CONFIG_KEY, run.info.run_id),
                "semantics": semantics.run_semantics(run),
                "start_time": run.info.start_time,
                **run.data.metrics,
            }
        )
    return pd.DataFrame(rows)
