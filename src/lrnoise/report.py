"""The paper's tables and figures, built from the tracking server (never from local files).

One paged search fetches every finished training run of the experiment with its params and metrics; the
noise summary (A_avr, A^eta and its CI) already sits on each training run, so no request is made per run.
Several runs of one configuration (seeds) are averaged in the tables; runs.csv keeps every run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lrnoise import noise, paper, tracking  # noqa: E402
from lrnoise.errors import LrnoiseError  # noqa: E402

CONFIG = ["dataset", "model", "optimizer", "lr"]  # what identifies a cell; seeds are averaged
BASELINE = tracking.BASELINE_ACCURACY
A_AVR = tracking.AVG_NORMALIZED_ACCURACY
TRADEOFF_ETA = 0.1  # Figure 4 plots normalised accuracy at eta = 10 %
SWEET_SPOT_ALIAS = "noise-robust"
MISSING = "—"


def fetch_runs(experiment: str, dataset=None, model=None, optimizer=None) -> pd.DataFrame:
    """Every finished training run (all pages) as one row: config, seed, run_id, metrics."""
    exp = tracking.find_experiment(experiment)
    filters = {k: v for k, v in {"dataset": dataset, "model": model, "optimizer": optimizer}.items() if v}
    frame = tracking.train_runs_frame(exp.experiment_id, filters)
    if frame.empty:
        return frame
    frame["lr"] = frame["lr"].astype(float)
    frame["seed"] = frame["seed"].astype(int)
    return frame.sort_values(CONFIG + ["seed"]).reset_index(drop=True)


def cells(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, std and count of `value` per configuration (runs without the metric are not counted)."""
    have = runs.dropna(subset=[value]) if value in runs else runs.iloc[0:0].assign(**{value: []})
    grouped = have.groupby(CONFIG)[value]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(), "n": grouped.count()}).reset_index()


def pivot(runs: pd.DataFrame, value: str, dataset: str, optimizer: str = "adam") -> pd.DataFrame:
    """Table II/III block: rows = model, columns = lr, cells = mean of `value` (NaN where no run)."""
    c = cells(runs, value)
    c = c[(c["dataset"] == dataset) & (c["optimizer"] == optimizer)]
    block = runs[(runs["dataset"] == dataset) & (runs["optimizer"] == optimizer)]
    table = c.pivot(index="model", columns="lr", values="mean")
    return table.reindex(index=sorted(block["model"].unique(), key=_depth), columns=sorted(block["lr"].unique()))


def _depth(model: str) -> int:
    return int("".join(ch for ch in model if ch.isdigit()) or 0)


def _pct(mean, std=np.nan, n=1) -> str:
    if pd.isna(mean):
        return MISSING
    text = f"{mean * 100:.2f}%"
    return f"{text} ±{std * 100:.2f} (n={int(n)})" if n > 1 else text


# ---------------------------------------------------------------- tables: csv (long, every stat), md, tex
def _formatted_blocks(runs, value, optimizer) -> dict[str, pd.DataFrame]:
    c = cells(runs, value).set_index(CONFIG)
    blocks = {}
    for dataset in sorted(runs["dataset"].unique()):
        means = pivot(runs, value, dataset, optimizer)
        text = means.astype(object)
        for model in means.index:
            for lr in means.columns:
                key = (dataset, model, optimizer, lr)
                text.loc[model, lr] = _pct(*c.loc[key, ["mean", "std", "n"]]) if key in c.index else MISSING
        text.columns = [f"{lr:g}" for lr in means.columns]
        blocks[dataset] = text
    return blocks


def markdown(frame: pd.DataFrame, index_name: str) -> str:
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(frame.index, frame.values)]
    return "\n".join(lines)


def latex(frame: pd.DataFrame, index_name: str) -> str:
    def esc(text):
        return str(text).replace("%", r"\%").replace("_", r"\_").replace("±", r"$\pm$").replace(MISSING, "--")
    lines = [r"\begin{tabular}{l" + "r" * len(frame.columns) + "}", r"\hline",
             " & ".join(map(esc, [index_name, *frame.columns])) + r" \\", r"\hline"]
    lines += [" & ".join(map(esc, [i, *row])) + r" \\" for i, row in zip(frame.index, frame.values)]
    return "\n".join(lines + [r"\hline", r"\end{tabular}"])


def write_table(out: Path, stem: str, title: str, runs: pd.DataFrame, value: str, optimizer: str) -> None:
    cells(runs, value).to_csv(out / f"{stem}.csv", index=False)
    blocks = _formatted_blocks(runs, value, optimizer)
    md = [f"# {title} ({optimizer}; mean ±std (n) where several runs)"]
    tex = [f"% {title} ({optimizer})"]
    for dataset, block in blocks.items():
        md += [f"\n## {dataset} (columns: learning rate)\n", markdown(block, "model")]
        tex += [f"% {dataset}", latex(block, "model")]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    (out / f"{stem}.tex").write_text("\n".join(tex) + "\n")


def optimizer_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Baseline accuracy and A_avr per optimizer at the (dataset, model, lr) with the most optimizers."""
    counts = runs.groupby(["dataset", "model", "lr"])["optimizer"].nunique()
    if counts.empty:
        return pd.DataFrame()
    dataset, model, lr = counts.idxmax()
    subset = runs[(runs["dataset"] == dataset) & (runs["model"] == model) & (runs["lr"] == lr)]
    base = cells(subset, BASELINE).set_index("optimizer")
    avr = cells(subset, A_AVR).set_index("optimizer")
    order = [o for o in paper.OPTIMIZERS if o in set(subset["optimizer"])]
    return pd.DataFrame({"dataset": dataset, "model": model, "lr": lr, "optimizer": order,
                         BASELINE: [base["mean"].get(o, np.nan) for o in order],
                         A_AVR: [avr["mean"].get(o, np.nan) for o in order],
                         "runs": [int(base["n"].get(o, 0)) for o in order]})


# ---------------------------------------------------------------- paper comparison and sweet spot
def paper_comparison(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for value, published in ((BASELINE, paper.BASELINE_ACCURACY), (A_AVR, paper.AVG_NORMALIZED_ACCURACY)):
        for row in cells(runs, value).itertuples():
            key = (row.dataset, row.model, row.lr)
            if row.optimizer == "adam" and key in published:
                rows.append({"table": "II" if value == BASELINE else "III", "dataset": row.dataset,
                             "model": row.model, "optimizer": "adam", "lr": row.lr, "metric": value,
                             "ours": row.mean, "paper": published[key], "difference": row.mean - published[key]})
    for value, published in ((BASELINE, paper.OPTIMIZER_BASELINE_ACCURACY),
                             (A_AVR, paper.OPTIMIZER_AVG_NORMALIZED_ACCURACY)):
        study = paper.OPTIMIZER_STUDY
        for row in cells(runs, value).itertuples():
            if (row.dataset, row.model, row.lr) == (study["dataset"], study["model"], study["lr"]) \
                    and row.optimizer != "adam" and row.optimizer in published:
                rows.append({"table": "Fig. 3", "dataset": row.dataset, "model": row.model,
                             "optimizer": row.optimizer, "lr": row.lr, "metric": value, "ours": row.mean,
                             "paper": published[row.optimizer], "difference": row.mean - published[row.optimizer]})
    return pd.DataFrame(rows, columns=["table", "dataset", "model", "optimizer", "lr", "metric", "ours", "paper",
                                       "difference"])


def sweet_spots(runs: pd.DataFrame, max_accuracy_drop: float = 0.01) -> pd.DataFrame:
    """Per dataset and model (Adam): among lrs whose mean baseline is within `max_accuracy_drop` of the best,
    the one with the highest mean A_avr; `run_id` is that configuration's run with the highest A_avr."""
    rows = []
    adam = runs[runs["optimizer"] == "adam"]
    if A_AVR not in adam:
        return pd.DataFrame()
    base, avr = cells(adam, BASELINE), cells(adam, A_AVR)
    merged = base.merge(avr, on=CONFIG, suffixes=("_baseline", "_avr"))
    for (dataset, model), group in merged.groupby(["dataset", "model"]):
        eligible = group[group["mean_baseline"] >= group["mean_baseline"].max() - max_accuracy_drop]
        best = eligible.loc[eligible["mean_avr"].idxmax()]
        candidates = adam[(adam["dataset"] == dataset) & (adam["model"] == model) & (adam["lr"] == best["lr"])]
        run_id = candidates.loc[candidates[A_AVR].idxmax(), "run_id"]
        rows.append({"dataset": dataset, "model": model, "lr": best["lr"], BASELINE: best["mean_baseline"],
                     A_AVR: best["mean_avr"], "run_id": run_id, "best_" + BASELINE: group["mean_baseline"].max()})
    return pd.DataFrame(rows)


def missing_configurations(runs: pd.DataFrame) -> list[str]:
    """Cells of the grid spanned by the finished Adam runs that have no run, or no noise evaluation."""
    adam = runs[runs["optimizer"] == "adam"]
    have = set(map(tuple, adam[["dataset", "model", "lr"]].values))
    evaluated = set(map(tuple, adam.dropna(subset=[A_AVR])[["dataset", "model", "lr"]].values)) \
        if A_AVR in adam else set()
    lines = []
    for dataset in sorted(adam["dataset"].unique()):
        for model in sorted(adam["model"].unique(), key=_depth):
            for lr in sorted(adam["lr"].unique()):
                if (dataset, model, lr) not in have:
                    lines.append(f"{dataset} {model} adam lr={lr:g}: no finished training run")
                elif (dataset, model, lr) not in evaluated:
                    lines.append(f"{dataset} {model} adam lr={lr:g}: no noise evaluation")
    return lines


# ---------------------------------------------------------------- figures
def noise_summary(group: pd.DataFrame) -> pd.DataFrame:
    """Per-eta normalised accuracy of one configuration: mean over its runs, CI from the draws (one run) or
    from the spread of the runs (several)."""
    rows = []
    for eta, column, ci_column in tracking.normalized_accuracy_columns(group.columns):
        have = group.dropna(subset=[column])
        if have.empty:
            continue
        values = have[column].to_numpy()
        if len(values) > 1:  # several runs: the spread of their means
            ci = noise.ci95(values)
        else:  # one run: the CI of its draws
            ci = float(have[ci_column].fillna(0).iloc[0]) if ci_column in have else 0.0
        rows.append({"eta": eta, "normalized_accuracy": float(values.mean()), "normalized_accuracy_ci95": ci})
    return pd.DataFrame(rows, columns=["eta", "normalized_accuracy", "normalized_accuracy_ci95"])


def _grid(n: int):
    cols = 2 if n > 1 else 1
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def fig_noise_curves(runs: pd.DataFrame, dataset: str, path: Path) -> None:
    adam = runs[(runs["dataset"] == dataset) & (runs["optimizer"] == "adam")]
    model_names = sorted(adam["model"].unique(), key=_depth)
    fig, axes = _grid(len(model_names))
    for ax, model in zip(axes, model_names):
        for lr, group in adam[adam["model"] == model].groupby("lr"):
            summary = noise_summary(group)
            if not summary.empty:
                noise.draw_noise_curve(ax, summary, label=f"lr {lr:g}")
        ax.set_title(f"{model} on {dataset}")
        ax.legend(fontsize=8)
    fig.suptitle(f"Normalised accuracy vs weight-noise form factor ({dataset}, Adam; bars: 95 % CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig_optimizers(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table[BASELINE] * 100, 0.4, label="baseline accuracy a_0")
    ax.bar(x + 0.2, table[A_AVR] * 100, 0.4, label="average normalised accuracy A_avr")
    ax.set_xticks(x, table["optimizer"])
    ax.set_ylabel("accuracy (%)")
    ax.set_xlabel("optimizer")
    first = table.iloc[0]
    ax.set_title(f"Optimizers: {first['model']} on {first['dataset']}, lr {first['lr']:g}")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig_tradeoff(runs: pd.DataFrame, dataset: str, path: Path) -> None:
    adam = runs[(runs["dataset"] == dataset) & (runs["optimizer"] == "adam")]
    column = tracking.normalized_accuracy_eta(TRADEOFF_ETA)
    model_names = sorted(adam["model"].unique(), key=_depth)
    fig, axes = _grid(len(model_names))
    for ax, model in zip(axes, model_names):
        group = adam[adam["model"] == model]
        base = group.groupby("lr")[BASELINE].mean()
        ax.plot(base.index, base.values * 100, "o-", color="tab:blue", label="baseline accuracy a_0")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("baseline accuracy (%)", color="tab:blue")
        twin = ax.twinx()
        if column in group:
            robust = group.groupby("lr")[column].mean().dropna()
            twin.plot(robust.index, robust.values * 100, "s--", color="tab:red",
                      label=f"normalised accuracy at eta {TRADEOFF_ETA:.0%}")
        twin.set_ylabel(f"normalised accuracy at eta {TRADEOFF_ETA:.0%} (%)", color="tab:red")
        ax.set_title(f"{model} on {dataset}")
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=8, loc="lower left")
    fig.suptitle(f"Accuracy / noise-resistance trade-off vs learning rate ({dataset}, Adam)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- the whole report
@dataclass
class Report:
    out: Path
    runs: pd.DataFrame
    sweet_spots: pd.DataFrame
    missing: list
    files: list


def build(experiment: str = tracking.DEFAULT_EXPERIMENT, out: str | Path | None = None, dataset=None,
          model=None, optimizer=None, max_accuracy_drop: float = 0.01, log_run: bool = True,
          set_alias: bool = True) -> Report:
    """Writes every table and figure into `out` (and as artifacts of a `report` run); returns what it found."""
    runs = fetch_runs(experiment, dataset, model, optimizer)
    if runs.empty:
        raise LrnoiseError(f"experiment {experiment!r} has no finished training runs"
                           + (" matching the filters" if dataset or model or optimizer else ""))
    out = Path(out or Path("reports") / experiment)
    out.mkdir(parents=True, exist_ok=True)
    table_optimizer = optimizer or "adam"
    runs.to_csv(out / "runs.csv", index=False)
    write_table(out, "table2_baseline_accuracy", "Table II: baseline (clean) test accuracy", runs, BASELINE,
                table_optimizer)
    write_table(out, "table3_avg_normalized_accuracy", "Table III: average normalised accuracy A_avr", runs,
                A_AVR, table_optimizer)
    optimizers = optimizer_table(runs)
    optimizers.to_csv(out / "table_optimizers.csv", index=False)
    shown = optimizers.assign(**{c: optimizers.get(c, pd.Series()).map(_pct) for c in (BASELINE, A_AVR)})
    (out / "table_optimizers.md").write_text("# Optimizers (Figure 3's data)\n\n"
                                             + markdown(shown.set_index("optimizer"), "optimizer") + "\n")
    (out / "table_optimizers.tex").write_text(latex(shown.set_index("optimizer"), "optimizer") + "\n")
    if len(optimizers) > 0:
        fig_optimizers(optimizers, out / "fig3_optimizers.png")
    for name in sorted(runs[runs["optimizer"] == "adam"]["dataset"].unique()):
        fig_noise_curves(runs, name, out / f"fig1_noise_curves_{name}.png")
        fig_tradeoff(runs, name, out / f"fig4_tradeoff_{name}.png")
    comparison = paper_comparison(runs)
    comparison.to_csv(out / "paper_comparison.csv", index=False)
    shown = comparison.assign(**{c: comparison[c].map(_pct) for c in ("ours", "paper")},
                              difference=comparison["difference"].map(lambda d: f"{d * 100:+.2f} pp"))
    (out / "paper_comparison.md").write_text(
        "# Ours vs the paper (matching dataset, model, optimizer, lr)\n\n"
        + (markdown(shown.set_index("table"), "table") if len(shown) else "No configuration matches the paper's.")
        + "\n")
    spots = sweet_spots(runs, max_accuracy_drop)
    spots.to_csv(out / "sweet_spot.csv", index=False)
    if set_alias:
        for run_id in spots.get("run_id", []):
            tracking.set_alias_for_run(run_id, SWEET_SPOT_ALIAS)
    missing = missing_configurations(runs)
    (out / "missing.txt").write_text("\n".join(missing) + ("\n" if missing else "none\n"))
    files = sorted(p.name for p in out.iterdir())
    if log_run:
        exp_id = tracking.find_experiment(experiment).experiment_id
        tracking.log_report(exp_id, out)
    return Report(out, runs, spots, missing, files)


def summary_text(report: Report) -> str:
    """What `lrnoise report` prints: the two tables, the sweet spots, what is missing, the files."""
    parts = [(report.out / "table2_baseline_accuracy.md").read_text(),
             (report.out / "table3_avg_normalized_accuracy.md").read_text()]
    if len(report.sweet_spots):
        parts.append("Sweet spot (highest A_avr within the accuracy margin of the best lr):")
        parts += [f"  {r['dataset']} {r['model']}: lr {r['lr']:g}  a_0 {r[BASELINE]:.2%}  A_avr {r[A_AVR]:.2%}"
                  for _, r in report.sweet_spots.iterrows()]
    parts.append(f"{len(report.missing)} configurations missing" + (":" if report.missing else ""))
    parts += [f"  {line}" for line in report.missing[:20]]
    parts.append(f"files in {report.out}: " + ", ".join(report.files))
    return "\n".join(parts)
