"""The report's tables of one noise configuration, as data: each configuration's value over its runs (`cells`:
mean, std, 95 % CI, n), Tables II and III as text blocks (mean ±CI (n); — for a hole, 'no learning' for a model
at chance), the optimizer table (Figure 3's data), ours beside the paper's numbers, the sweet spots and the
grid's holes. Rows are report.rows' dataclasses; reads no store and draws nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrnoise import names, paper
from lrnoise.analysis import lr_claims
from lrnoise.analysis.run_table import frame
from lrnoise.config import describe_data
from lrnoise.noise import statistics
from lrnoise.report.results import A_AVR_DRAW_CI, CONFIG, LEARNED, clean_runs, learned_runs, row_label
from lrnoise.report.rows import CellRow, ComparisonRow, OptimizerRow, SweetSpotRow

MISSING = "—"  # a table cell without a run
NO_LEARNING = "no learning"  # Table III's cell where no seed's model learned


def cells(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, std, 95 % CI and count of `value` per configuration (runs without the metric not counted): the
    t-interval over seeds, or for the A_avr of a single run its interval over the run's draws. Rows: CellRow."""
    have = runs.dropna(subset=[value]) if value in runs else runs.iloc[0:0].assign(**{value: []})
    rows = []
    for key, group in have.groupby(CONFIG, dropna=False):
        values = group[value].to_numpy(dtype=float)
        mean, ci, n = statistics.mean_ci(values)
        if n == 1 and value == names.AVG_NORMALIZED_ACCURACY and A_AVR_DRAW_CI in group:
            ci = float(np.nan_to_num(group[A_AVR_DRAW_CI].iloc[0]))
        std = float(np.std(values, ddof=1)) if n > 1 else 0.0
        rows.append(CellRow(**dict(zip(CONFIG, key)), mean=mean, std=std, ci95=ci, n=n))
    return frame(rows, CellRow)


def pivot(runs: pd.DataFrame, value: str, dataset: str, optimizer: str = "adam") -> pd.DataFrame:
    """Table II/III block: rows = model, columns = lr, cells = mean of `value` (NaN where no run)."""
    c = cells(runs, value)
    c = c[(c["dataset"] == dataset) & (c["optimizer"] == optimizer)]
    block = runs[(runs["dataset"] == dataset) & (runs["optimizer"] == optimizer)]
    table = c.pivot(index="label", columns="lr", values="mean")
    return table.reindex(index=_row_order(block), columns=sorted(block["lr"].unique()))


def _depth(model: str) -> int:
    return int("".join(ch for ch in model if ch.isdigit()) or 0)


def _row_order(block: pd.DataFrame) -> list:
    """A block's row labels, by depth, then batch size."""
    rows = block.drop_duplicates("label")
    return [r.label for r in sorted(rows.itertuples(), key=lambda r: (_depth(r.model), np.nan_to_num(r.batch_size)))]


def _pct(mean, ci=np.nan, n=1) -> str:
    """'91.00%', or with several runs '91.00% ±12.71 (n=2)' (± the 95 % t-CI half-width over seeds)."""
    if pd.isna(mean):
        return MISSING
    text = f"{mean * 100:.2f}%"
    return f"{text} ±{ci * 100:.2f} (n={int(n)})" if n > 1 else text


def formatted_optimizers(optimizers: pd.DataFrame) -> pd.DataFrame:
    """Figure 3's data as Tables II-III show values: one row per optimizer, mean ±CI (n) in percent, the CI only
    where there are several runs (one run has no interval)."""
    rows = {
        row["optimizer"]: {
            "baseline accuracy": _pct(row[names.BASELINE_ACCURACY], row["baseline_ci95"], row["runs"]),
            "A_avr": _pct(row[names.AVG_NORMALIZED_ACCURACY], row["avr_ci95"], row["runs"]),
        }
        for row in optimizers.to_dict("records")
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("optimizer")


def formatted_block(runs: pd.DataFrame, value: str, dataset: str, optimizer: str) -> pd.DataFrame:
    """A Table II/III block as text: mean ±CI (n), — for a hole, 'no learning' for a model at chance
    (Table III only: Table II keeps the measured accuracy)."""
    c = cells(runs, value).set_index(["dataset", "optimizer", "label", "lr"])
    block = runs[(runs["dataset"] == dataset) & (runs["optimizer"] == optimizer)]
    labels = _row_order(block)
    lrs = sorted(block["lr"].unique())
    text = pd.DataFrame(MISSING, index=pd.Index(labels, name="model"), columns=[f"{lr:g}" for lr in lrs])
    for label in labels:
        for lr in lrs:
            key = (dataset, optimizer, label, lr)
            cell = block[(block["label"] == label) & (block["lr"] == lr)]
            if value != names.BASELINE_ACCURACY and len(cell) and LEARNED in cell and not cell[LEARNED].any():
                text.loc[label, f"{lr:g}"] = NO_LEARNING
            elif key in c.index:
                text.loc[label, f"{lr:g}"] = _pct(*c.loc[[key], ["mean", "ci95", "n"]].iloc[0])
    return text


def table(runs: pd.DataFrame, value: str, optimizer: str, learned_only: bool) -> dict[str, pd.DataFrame]:
    """{the data in words: formatted block} for Table II (baseline) or III (A_avr; models that did not learn
    blanked, a cell where no seed learned reads 'no learning')."""
    runs = clean_runs(runs)
    source = _mark_unlearned(runs) if learned_only else runs
    return {
        describe_data(dataset): formatted_block(source, value, dataset, optimizer)
        for dataset in sorted(runs["dataset"].unique())
    }


def _mark_unlearned(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with A_avr blanked where the model did not learn."""
    out = runs.copy()
    if LEARNED in out and names.AVG_NORMALIZED_ACCURACY in out:
        out.loc[~out[LEARNED], names.AVG_NORMALIZED_ACCURACY] = np.nan
    return out


def optimizer_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Baseline accuracy and A_avr (mean, CI, n) per optimizer at the (dataset, model, lr) with the most
    optimizers: Figure 3's data. Rows: OptimizerRow; no clean run: an empty frame without columns."""
    runs = clean_runs(runs)
    counts = runs.groupby(["dataset", "model", "batch_size", "lr"], dropna=False)["optimizer"].nunique()
    if counts.empty:
        return pd.DataFrame()
    dataset, model, batch_size, lr = counts.idxmax()
    subset = runs[
        (runs["dataset"] == dataset)
        & (runs["model"] == model)
        & (runs["lr"] == lr)
        & ((runs["batch_size"] == batch_size) | pd.isna(batch_size))
    ]
    base = cells(subset, names.BASELINE_ACCURACY).set_index("optimizer")
    avr = (
        cells(learned_runs(subset), names.AVG_NORMALIZED_ACCURACY).set_index("optimizer")
        if names.AVG_NORMALIZED_ACCURACY in subset
        else pd.DataFrame()
    )
    order = [o for o in paper.OPTIMIZERS if o in set(subset["optimizer"])]

    def get(table, column, o, default=np.nan):
        return table[column].get(o, default) if column in table else default

    rows = [
        OptimizerRow(
            dataset=dataset,
            model=model,
            batch_size=batch_size,
            lr=lr,
            optimizer=o,
            baseline=get(base, "mean", o),
            baseline_ci95=get(base, "ci95", o),
            avr=get(avr, "mean", o),
            avr_ci95=get(avr, "ci95", o),
            runs=int(get(base, "n", o, 0)),
        )
        for o in order
    ]
    return frame(rows, OptimizerRow)


# ---------------------------------------------------------------- paper comparison, sweet spot, missing cells
def paper_comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Ours beside the paper's Table II / III and Figure 3 values (the paper's configuration only; runs trained
    clean). Rows: ComparisonRow."""
    runs = clean_runs(runs)
    rows = []
    for value, published in (
        (names.BASELINE_ACCURACY, paper.BASELINE_ACCURACY),
        (names.AVG_NORMALIZED_ACCURACY, paper.AVG_NORMALIZED_ACCURACY),
    ):
        for row in cells(runs, value).itertuples():
            key = (row.dataset, row.model, row.lr)
            if row.optimizer == "adam" and key in published:
                rows.append(
                    ComparisonRow(
                        table="II" if value == names.BASELINE_ACCURACY else "III",
                        dataset=row.dataset,
                        model=row.label,
                        optimizer="adam",
                        lr=row.lr,
                        metric=value,
                        ours=row.mean,
                        paper=published[key],
                        difference=row.mean - published[key],
                    )
                )
    study = paper.OPTIMIZER_STUDY
    for value, published in (
        (names.BASELINE_ACCURACY, paper.OPTIMIZER_BASELINE_ACCURACY),
        (names.AVG_NORMALIZED_ACCURACY, paper.OPTIMIZER_AVG_NORMALIZED_ACCURACY),
    ):
        for row in cells(runs, value).itertuples():
            if (
                (row.dataset, row.model, row.lr) == (study["dataset"], study["model"], study["lr"])
                and row.optimizer != "adam"
                and row.optimizer in published
            ):
                rows.append(
                    ComparisonRow(
                        table="Fig. 3",
                        dataset=row.dataset,
                        model=row.label,
                        optimizer=row.optimizer,
                        lr=row.lr,
                        metric=value,
                        ours=row.mean,
                        paper=published[row.optimizer],
                        difference=row.mean - published[row.optimizer],
                    )
                )
    return frame(rows, ComparisonRow)


def sweet_spots(runs: pd.DataFrame, max_accuracy_drop: float) -> pd.DataFrame:
    """Per dataset and model (and batch size; Adam, trained clean, models that learned): among lrs whose mean
    baseline is within `max_accuracy_drop` (a fraction) of the best, the one with the highest mean A_avr;
    `run_id` is that configuration's run with the highest A_avr. Rows: SweetSpotRow; none: an empty frame without
    columns."""
    adam = clean_runs(learned_runs(runs))
    adam = (
        adam[adam["optimizer"] == "adam"].dropna(subset=[names.AVG_NORMALIZED_ACCURACY])
        if names.AVG_NORMALIZED_ACCURACY in adam
        else adam.iloc[0:0]
    )
    rows = []
    for (dataset, model), group in adam.groupby(["dataset", "label"]):
        lr = lr_claims.sweet_spot(group, names.BASELINE_ACCURACY, names.AVG_NORMALIZED_ACCURACY, max_accuracy_drop)
        at = group[group["lr"] == lr]
        several = model != group["model"].iloc[0]  # the label names the batch size: several in this report
        rows.append(
            SweetSpotRow(
                dataset=dataset,
                model=model,
                alias_suffix=f"-b{int(group['batch_size'].iloc[0])}" if several else "",
                lr=lr,
                baseline=at[names.BASELINE_ACCURACY].mean(),
                avr=at[names.AVG_NORMALIZED_ACCURACY].mean(),
                run_id=at.loc[at[names.AVG_NORMALIZED_ACCURACY].idxmax(), "run_id"],
                best_baseline=group.groupby("lr")[names.BASELINE_ACCURACY].mean().max(),
            )
        )
    return frame(rows, SweetSpotRow) if rows else pd.DataFrame()


def missing_configurations(runs: pd.DataFrame) -> list[str]:
    """Cells of the grid spanned by the finished clean Adam runs (per dataset and batch size: the models and lrs
    run at it) that have no run, or no noise evaluation."""
    adam = clean_runs(runs)
    adam = adam[adam["optimizer"] == "adam"]
    key = ["dataset", "label", "lr"]
    have = set(map(tuple, adam[key].values))
    evaluated = (
        set(map(tuple, adam.dropna(subset=[names.AVG_NORMALIZED_ACCURACY])[key].values))
        if names.AVG_NORMALIZED_ACCURACY in adam
        else set()
    )
    unlearned = set(map(tuple, adam[~adam[LEARNED]][key].values)) if LEARNED in adam else set()
    several = runs["batch_size"].nunique(dropna=False) > 1
    lines = []
    for (dataset, batch_size), block in adam.groupby(["dataset", "batch_size"], dropna=False, sort=True):
        for model in sorted(set(adam[adam["dataset"] == dataset]["model"]), key=_depth):
            label = row_label(model, batch_size, several)
            for lr in sorted(block["lr"].unique()):
                if (dataset, label, lr) not in have:
                    lines.append(f"{dataset} {label} adam lr={lr:g}: no finished training run")
                elif (dataset, label, lr) not in evaluated and (dataset, label, lr) not in unlearned:
                    lines.append(f"{dataset} {label} adam lr={lr:g}: no noise evaluation")
    return lines


def comparison_text(comparison: pd.DataFrame) -> pd.DataFrame:
    """paper_comparison as the report shows it: values in %, differences in percentage points, by table."""
    shown = comparison.assign(
        **{c: comparison[c].map(_pct) for c in ("ours", "paper")},
        difference=comparison["difference"].map(lambda d: f"{d * 100:+.2f} pp"),
    )
    return shown.set_index("table")
