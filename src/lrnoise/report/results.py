"""The tracking store's runs as the report's frames: every finished training run (one typed row each, read by
run_frames.train_runs_frame) and noise evaluation, the noise configurations found among them, and one
configuration's evaluations joined onto its training runs; and which of those runs the paper's tables and
figures count (clean_runs, learned_runs). Reads the store; writes nothing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrnoise import NOISE_SEMANTICS, TRAINING_SEMANTICS, names
from lrnoise.config import SUBSETS, data_name
from lrnoise.errors import LrnoiseError
from lrnoise.grid import CELL
from lrnoise.noise import noise_config
from lrnoise.store import run_frames, session

# What identifies a cell; its runs are seeds and are averaged. `label` names a row of a table or a line of a
# figure: the model, with its batch size when the experiment has several (row_labels).
CONFIG = [*CELL, "label", "lr"]
A_AVR_DRAW_CI = "avg_normalized_accuracy_ci95"  # one run's A_avr CI over its draws (report column, not a metric)
ALL = "all"  # every noise configuration found
LEARNED = "learned"  # a training run's column (run_frames.train_runs_frame): False where a_0 was not above chance


@dataclass(frozen=True)
class ConfigInfo:
    """A noise configuration as found in the store: key, name, level axis and levels."""

    key: str
    name: str
    level_name: str  # eta | t
    levels: tuple

    @property
    def is_paper(self) -> bool:
        return self.name == noise_config.PAPER.name


def fetch(experiment: str, dataset=None, model=None, optimizer=None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(finished training runs, finished noise evaluations, experiment id): two paged searches. Where one
    configuration was run under several semantics numbers, only its runs of this code's (else the newest) count."""
    exp = session.find_experiment(experiment)
    filters = {k: v for k, v in {"dataset": dataset, "model": model, "optimizer": optimizer}.items() if v}
    runs = run_frames.train_runs_frame(exp.experiment_id, filters)
    if runs.empty:
        raise LrnoiseError(
            f"experiment {experiment!r} has no finished training runs" + (" matching the filters" if filters else "")
        )
    runs = newest_semantics(runs, ["config_key"], TRAINING_SEMANTICS)
    runs = row_labels(runs).sort_values(CONFIG + ["seed"]).reset_index(drop=True)
    evals = run_frames.noise_runs_frame(exp.experiment_id)
    if len(evals):  # the evaluations of the counted training runs, each under its newest semantics
        evals = newest_semantics(evals[evals["run_id"].isin(runs["run_id"])], ["run_id", "run_key"], NOISE_SEMANTICS)
    return runs, evals, exp.experiment_id


def newest_semantics(frame: pd.DataFrame, keys: list[str], current: int | None = None) -> pd.DataFrame:
    """The rows of each configuration (`keys`) made under one semantics number: `current` (this code's) where the
    configuration has runs of it, else its newest. A configuration trained again by other code is counted once,
    not once per code version."""
    own = frame["semantics"] == current
    has_own = own.groupby([frame[k] for k in keys]).transform("any")
    newest = frame.groupby(keys)["semantics"].transform("max")
    return frame[(has_own & own) | (~has_own & (frame["semantics"] == newest))]


def semantics_note(runs: pd.DataFrame, evals: pd.DataFrame) -> str:
    """One line when the report's runs were not all made under this code's semantics: which numbers they span,
    with counts, and this code's ('' when all are this code's)."""
    parts = []
    for what, frame, current in (
        ("training", runs, TRAINING_SEMANTICS),
        ("noise evaluation", evals, NOISE_SEMANTICS),
    ):
        counts = frame["semantics"].value_counts().sort_index() if len(frame) else pd.Series(dtype=int)
        if len(counts) and list(counts.index) != [current]:
            spread = ", ".join(f"{s} ({n} runs)" for s, n in counts.items())
            verb = "span semantics" if len(counts) > 1 else "were made under semantics"
            parts.append(f"{what} runs {verb} {spread}, this lrnoise's is {current}")
    if not parts:
        return ""
    return "code versions: " + "; ".join(parts) + " (a study makes runs of other semantics again unless --reuse any)"


def configurations(evals: pd.DataFrame) -> list[ConfigInfo]:
    """Every noise configuration evaluated in the store, the paper's first."""
    found = {}
    for row in evals.drop_duplicates("noise_config").itertuples() if not evals.empty else ():
        try:
            config = noise_config.NoiseConfig.from_params(row.noise_params)
        except LrnoiseError:  # a noise model (or option) this lrnoise does not know: not reported
            continue
        found[row.noise_config] = ConfigInfo(row.noise_config, row.noise_config_name, config.level_name, config.levels)
    return sorted(found.values(), key=lambda c: (not c.is_paper, c.name))


def choose(found: list[ConfigInfo], wanted: str) -> list[ConfigInfo]:
    """The configurations `wanted` names: a name, a key (or its first 6+ characters), or 'all'. The paper's
    configuration is always available (its Table II stands even before any evaluation)."""
    paper_info = ConfigInfo(noise_config.PAPER.key, noise_config.PAPER.name, "eta", noise_config.PAPER.levels)
    if wanted == ALL:
        return found or [paper_info]
    match = [c for c in found if wanted in (c.name, c.key) or (len(wanted) >= 6 and c.key.startswith(wanted))]
    if match:
        return match[:1]
    if wanted in (paper_info.name, paper_info.key):
        return [paper_info]
    names = ", ".join(c.name for c in found) or "none"
    raise LrnoiseError(
        f"no noise evaluation with configuration {wanted!r} in this experiment: found {names} "
        f"(or pass --noise-config all)"
    )


def level_columns(info: ConfigInfo) -> list[tuple[float, str, str]]:
    """(level, A^x metric, its CI metric) of a configuration, in level order."""
    out = []
    for level in sorted(info.levels):
        label = noise_config.level_label(info.level_name, level)
        out.append(
            (
                level,
                names.level_metric(names.NORMALIZED_ACCURACY, info.level_name, label),
                names.level_metric(names.NORMALIZED_ACCURACY_CI95, info.level_name, label),
            )
        )
    return out


def join(runs: pd.DataFrame, evals: pd.DataFrame, info: ConfigInfo) -> pd.DataFrame:
    """One row per training run with this configuration's A_avr and A^x (NaN where not evaluated). A model
    evaluated several times under the configuration (other trials or seeds) gets the mean of its evaluations."""
    per_level = [c for _, a, ci in level_columns(info) for c in (a, ci)]
    columns = [*per_level, names.AVG_NORMALIZED_ACCURACY, names.NONFINITE_DRAWS]
    mine = evals[evals["noise_config"] == info.key] if not evals.empty else pd.DataFrame(columns=["run_id"])
    mine = mine.reindex(columns=["run_id", *columns])
    per_run = (
        mine.groupby("run_id")[columns].mean(numeric_only=False).reset_index()
        if len(mine)
        else pd.DataFrame(columns=["run_id", *columns])
    )
    own = [c for c in runs.columns if c not in columns or c == "run_id"]  # the paper's names also sit on runs
    joined = runs[own].merge(per_run, on="run_id", how="left")
    for column in columns:
        joined[column] = pd.to_numeric(joined[column], errors="coerce")
    # A_avr's 95 % CI over one run's draws: the levels' draws are independent, A_avr their mean over L levels
    level_cis = [ci for _, _, ci in level_columns(info)]
    joined[A_AVR_DRAW_CI] = np.sqrt((joined[level_cis] ** 2).sum(axis=1, min_count=1)) / len(level_cis)
    return with_data_names(joined)


def with_data_names(runs: pd.DataFrame) -> pd.DataFrame:
    """runs whose `dataset` names the subsets a run drew (config.data_name: 'fashion_mnist-n4000-t1000'), so
    every table, figure and claim keeps runs on different subsets apart and says which subset it is."""
    subsets = [runs[c] if c in runs else [None] * len(runs) for c in SUBSETS]
    return runs.assign(dataset=[data_name(d, n, t) for d, n, t in zip(runs["dataset"], *subsets)])


def row_labels(runs: pd.DataFrame) -> pd.DataFrame:
    """runs with `label`: the model, plus " B=<batch size>" when the runs have several batch sizes."""
    several = runs["batch_size"].nunique(dropna=False) > 1
    return runs.assign(label=[row_label(m, b, several) for m, b in zip(runs["model"], runs["batch_size"])])


def row_label(model: str, batch_size, several: bool) -> str:
    return f"{model} B={int(batch_size)}" if several and pd.notna(batch_size) else model


def clean_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs trained without noise injection: the paper's tables and figures are about these."""
    return runs[runs["train_noise"] == 0] if "train_noise" in runs else runs


def learned_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose model learned: the only ones that enter noise figures, sweet spots, trends and claims."""
    return runs[runs[LEARNED]] if LEARNED in runs else runs
