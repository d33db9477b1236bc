"""The run table every claim reads and the claim tables it writes (numpy and pandas: no MLflow, no figures).

In: one row per run; `require` names a missing column, `with_axes` makes every training axis a number (train
noise 0 and the epochs budget where a run predates them), and `evaluated_runs` keeps the runs a claim is made on
(models that learned, with A_avr). Out: each claim table's row is a dataclass whose fields are the table's
columns in order (`columns`), built row by row and turned into a frame by `frame`; `prefixed` spreads one test's
results over a row's `<prefix>_<key>` fields. The verdict words a "no verdict" row carries live here too.
"""

from __future__ import annotations

from dataclasses import field, fields

import numpy as np
import pandas as pd

from lrnoise import config, names
from lrnoise.errors import LrnoiseError

NAN = float("nan")
TOO_FEW_SEEDS = "too few seeds"  # some cell has a single run: its spread cannot be estimated
TIE = 1e-12  # floating slack so a baseline exactly max_accuracy_drop below the best still counts as within it


def require(frame: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise LrnoiseError(f"column(s) {', '.join(missing)} missing; the table has {have}")


def learned_mask(runs: pd.DataFrame) -> pd.Series:
    """False only for runs marked learned == False (a bool, or the text "false" as a tracking store returns it)."""
    if "learned" not in runs:
        return pd.Series(True, index=runs.index)
    return ~runs["learned"].map(lambda v: str(v).strip().lower() == "false")


def with_axes(runs: pd.DataFrame) -> pd.DataFrame:
    """runs with every training axis as a number: lr and batch_size as given (batch_size NaN when absent),
    train_noise 0.0 where absent (a run from before noise-injection training trained clean), and the budget
    (epochs where absent: a training under the epochs budget does not log one)."""
    out = runs.copy()
    out["lr"] = out["lr"].astype(float)
    out["batch_size"] = pd.to_numeric(out["batch_size"], errors="coerce") if "batch_size" in out else np.nan
    out["train_noise"] = pd.to_numeric(out["train_noise"], errors="coerce").fillna(0.0) if "train_noise" in out else 0.0
    out["budget"] = out["budget"].fillna(config.TrainConfig.budget) if "budget" in out else config.TrainConfig.budget
    return out


def evaluated_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs every claim is made on: models that learned, with A_avr, their axes as numbers."""
    return with_axes(runs[learned_mask(runs)].dropna(subset=[names.AVG_NORMALIZED_ACCURACY]))


def count_range(counts) -> str:
    """Runs per cell in words: '3' when every cell has 3, '2-4' when they range."""
    low, high = int(min(counts)), int(max(counts))
    return str(low) if low == high else f"{low}-{high}"


# ---------------------------------------------------------------- tables: a row dataclass per table
COLUMN = "column"  # field metadata key: the column's name where it is not the field's (p_lr^2/B, a metric's name)


def named(column: str, **default):
    """A field whose column is called `column` (a metric's name, or no identifier), not by the field's name."""
    return field(metadata={COLUMN: column}, **default)


def columns(row_type) -> list[str]:
    """A table's columns: its row dataclass's fields in order (a field's metadata "column" where the column's
    name is no identifier, e.g. eq. 2's p_lr^2/B)."""
    return [f.metadata.get(COLUMN, f.name) for f in fields(row_type)]


def frame(rows: list, row_type) -> pd.DataFrame:
    """The table of `rows` (row_type instances), its columns `columns(row_type)` even when there is no row."""
    named = list(zip(columns(row_type), fields(row_type)))
    return pd.DataFrame([{c: getattr(row, f.name) for c, f in named} for row in rows], columns=columns(row_type))


def prefixed(prefix: str, found: dict, row_type) -> dict:
    """The entries of one test's results `found` that are row_type's fields as `<prefix>_<key>`, under those
    names (keys the row has no column for are left out; a field not in `found` keeps its default)."""
    wanted = {f.name for f in fields(row_type)}
    return {f"{prefix}_{key}": value for key, value in found.items() if f"{prefix}_{key}" in wanted}
