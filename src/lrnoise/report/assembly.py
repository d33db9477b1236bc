"""The paper's tables and figures, per noise configuration, built from the tracking server (never local files).

Two paged searches fetch every finished training run and every finished noise evaluation of the experiment;
evaluations are joined to their training runs by configuration key, so a table only ever holds evaluations
of exactly one NoiseConfig (several evaluations of one model under it, differing only in precision, are
averaged). `build` returns the tables and figures of one configuration as data; `write` writes them in one
place; `build_and_write` is the command. Several runs of one cell (seeds) give mean, 95 % t-CI and n.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lrnoise import names, paper
from lrnoise.analysis import frontier, stats, verdicts
from lrnoise.noise import injection
from lrnoise.report import figures, report_html
from lrnoise.report.claims_text import claims_markdown, verdict_lines
from lrnoise.report.results import (
    A_AVR,
    A_AVR_DRAW_CI,
    CONFIG,
    ConfigInfo,
    choose,
    configurations,
    fetch,
    join,
    level_columns,
    row_label,
    semantics_note,
)
from lrnoise.store import tracking

BASELINE = names.BASELINE_ACCURACY
LEARNED = "learned"
GRAD_NOISE = names.GRAD_NOISE_POWER_MEAN
SWEET_SPOT_ALIAS = "noise-robust"
MISSING = "—"
NO_LEARNING = "no learning"


def clean_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs trained without noise injection: the paper's tables and figures are about these."""
    return runs[runs["train_noise"] == 0] if "train_noise" in runs else runs


def learned_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose model learned: the only ones that enter noise figures, sweet spots, trends and claims."""
    return runs[runs[LEARNED]] if LEARNED in runs else runs


# ---------------------------------------------------------------- cells and tables
def cells(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, std, 95 % CI and count of `value` per configuration (runs without the metric not counted): the
    t-interval over seeds, or for the A_avr of a single run its interval over the run's draws."""
    have = runs.dropna(subset=[value]) if value in runs else runs.iloc[0:0].assign(**{value: []})
    rows = []
    for key, group in have.groupby(CONFIG, dropna=False):
        values = group[value].to_numpy(dtype=float)
        mean, ci, n = stats.mean_ci(values)
        if n == 1 and value == A_AVR and A_AVR_DRAW_CI in group:
            ci = float(np.nan_to_num(group[A_AVR_DRAW_CI].iloc[0]))
        rows.append(
            {
                **dict(zip(CONFIG, key)),
                "mean": mean,
                "std": float(np.std(values, ddof=1)) if n > 1 else 0.0,
                "ci95": ci,
                "n": n,
            }
        )
    return pd.DataFrame(rows, columns=[*CONFIG, "mean", "std", "ci95", "n"])


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
            if value != BASELINE and len(cell) and LEARNED in cell and not cell[LEARNED].any():
                text.loc[label, f"{lr:g}"] = NO_LEARNING
            elif key in c.index:
                text.loc[label, f"{lr:g}"] = _pct(*c.loc[[key], ["mean", "ci95", "n"]].iloc[0])
    return text


def table(runs: pd.DataFrame, value: str, optimizer: str, learned_only: bool) -> dict[str, pd.DataFrame]:
    """{dataset: formatted block} for Table II (baseline) or III (A_avr; models that did not learn blanked,
    a cell where no seed learned reads 'no learning')."""
    runs = clean_runs(runs)
    source = _mark_unlearned(runs) if learned_only else runs
    return {dataset: formatted_block(source, value, dataset, optimizer) for dataset in sorted(runs["dataset"].unique())}


def _mark_unlearned(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with A_avr blanked where the model did not learn."""
    out = runs.copy()
    if LEARNED in out and A_AVR in out:
        out.loc[~out[LEARNED], A_AVR] = np.nan
    return out


def optimizer_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Baseline accuracy and A_avr (mean, CI, n) per optimizer at the (dataset, model, lr) with the most
    optimizers: Figure 3's data."""
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
    base = cells(subset, BASELINE).set_index("optimizer")
    avr = cells(learned_runs(subset), A_AVR).set_index("optimizer") if A_AVR in subset else pd.DataFrame()
    order = [o for o in paper.OPTIMIZERS if o in set(subset["optimizer"])]

    def get(frame, column, o, default=np.nan):
        return frame[column].get(o, default) if column in frame else default

    return pd.DataFrame(
        {
            "dataset": dataset,
            "model": model,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": order,
            BASELINE: [get(base, "mean", o) for o in order],
            "baseline_ci95": [get(base, "ci95", o) for o in order],
            A_AVR: [get(avr, "mean", o) for o in order],
            "avr_ci95": [get(avr, "ci95", o) for o in order],
            "runs": [int(get(base, "n", o, 0)) for o in order],
        }
    )


# ---------------------------------------------------------------- paper comparison, sweet spot, missing cells
def paper_comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Ours beside the paper's Table II / III and Figure 3 values (the paper's configuration only; runs trained
    clean)."""
    runs = clean_runs(runs)
    rows = []
    for value, published in ((BASELINE, paper.BASELINE_ACCURACY), (A_AVR, paper.AVG_NORMALIZED_ACCURACY)):
        for row in cells(runs, value).itertuples():
            key = (row.dataset, row.model, row.lr)
            if row.optimizer == "adam" and key in published:
                rows.append(
                    {
                        "table": "II" if value == BASELINE else "III",
                        "dataset": row.dataset,
                        "model": row.label,
                        "optimizer": "adam",
                        "lr": row.lr,
                        "metric": value,
                        "ours": row.mean,
                        "paper": published[key],
                        "difference": row.mean - published[key],
                    }
                )
    study = paper.OPTIMIZER_STUDY
    for value, published in (
        (BASELINE, paper.OPTIMIZER_BASELINE_ACCURACY),
        (A_AVR, paper.OPTIMIZER_AVG_NORMALIZED_ACCURACY),
    ):
        for row in cells(runs, value).itertuples():
            if (
                (row.dataset, row.model, row.lr) == (study["dataset"], study["model"], study["lr"])
                and row.optimizer != "adam"
                and row.optimizer in published
            ):
                rows.append(
                    {
                        "table": "Fig. 3",
                        "dataset": row.dataset,
                        "model": row.label,
                        "optimizer": row.optimizer,
                        "lr": row.lr,
                        "metric": value,
                        "ours": row.mean,
                        "paper": published[row.optimizer],
                        "difference": row.mean - published[row.optimizer],
                    }
                )
    return pd.DataFrame(
        rows, columns=["table", "dataset", "model", "optimizer", "lr", "metric", "ours", "paper", "difference"]
    )


def sweet_spots(runs: pd.DataFrame, max_accuracy_drop: float = 0.01) -> pd.DataFrame:
    """Per dataset and model (and batch size; Adam, trained clean, models that learned): among lrs whose mean
    baseline is within `max_accuracy_drop` (a fraction) of the best, the one with the highest mean A_avr;
    `run_id` is that configuration's run with the highest A_avr."""
    adam = clean_runs(learned_runs(runs))
    adam = adam[adam["optimizer"] == "adam"].dropna(subset=[A_AVR]) if A_AVR in adam else adam.iloc[0:0]
    rows = []
    for (dataset, model), group in adam.groupby(["dataset", "label"]):
        lr = stats.sweet_spot(group, BASELINE, A_AVR, max_accuracy_drop)
        at = group[group["lr"] == lr]
        several = model != group["model"].iloc[0]  # the label names the batch size: several in this report
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "alias_suffix": f"-b{int(group['batch_size'].iloc[0])}" if several else "",
                "lr": lr,
                BASELINE: at[BASELINE].mean(),
                A_AVR: at[A_AVR].mean(),
                "run_id": at.loc[at[A_AVR].idxmax(), "run_id"],
                "best_" + BASELINE: group.groupby("lr")[BASELINE].mean().max(),
            }
        )
    return pd.DataFrame(rows)


def missing_configurations(runs: pd.DataFrame) -> list[str]:
    """Cells of the grid spanned by the finished clean Adam runs (per dataset and batch size: the models and lrs
    run at it) that have no run, or no noise evaluation."""
    adam = clean_runs(runs)
    adam = adam[adam["optimizer"] == "adam"]
    key = ["dataset", "label", "lr"]
    have = set(map(tuple, adam[key].values))
    evaluated = set(map(tuple, adam.dropna(subset=[A_AVR])[key].values)) if A_AVR in adam else set()
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


# ---------------------------------------------------------------- figure data
def curve_points(runs: pd.DataFrame, info: ConfigInfo, dataset: str) -> pd.DataFrame:
    """Figure 1/2's data: per model, lr and level, the normalised accuracy (mean over runs), its 95 % CI (over
    the runs when several, over the draws of the one run otherwise) and the number of runs."""
    adam = clean_runs(learned_runs(runs))
    adam = adam[(adam["dataset"] == dataset) & (adam["optimizer"] == "adam")]
    rows = []
    for (model, lr), group in adam.groupby(["label", "lr"]):
        for level, column, ci_column in level_columns(info):
            have = group.dropna(subset=[column]) if column in group else group.iloc[0:0]
            if have.empty:
                continue
            values = have[column].to_numpy(dtype=float)
            mean, ci, n = stats.mean_ci(values)
            if n == 1 and ci_column in have:
                ci = float(np.nan_to_num(have[ci_column].iloc[0]))
            rows.append({"model": model, "lr": lr, "level": level, "normalized_accuracy": mean, "ci95": ci, "n": n})
    return pd.DataFrame(rows, columns=["model", "lr", "level", "normalized_accuracy", "ci95", "n"])


def tradeoff_points(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 4's data: baseline accuracy and A_avr (mean, 95 % CI, n) per model and lr, Adam."""
    adam = clean_runs(learned_runs(runs))
    adam = adam[(adam["dataset"] == dataset) & (adam["optimizer"] == "adam")]
    base, robust = cells(adam, BASELINE), cells(adam, A_AVR)
    merged = base.merge(robust, on=CONFIG, suffixes=("_b", "_r"))
    return pd.DataFrame(
        {
            "model": merged["label"],
            "lr": merged["lr"],
            "baseline": merged["mean_b"],
            "baseline_ci95": merged["ci95_b"],
            "robust": merged["mean_r"],
            "robust_ci95": merged["ci95_r"],
            "n": merged["n_r"],
        }
    )


def mechanism_points(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 6's data: A_avr against the mean gradient-noise power of training, one point per run."""
    use = clean_runs(learned_runs(runs))
    use = use[use["dataset"] == dataset]
    if GRAD_NOISE not in use or A_AVR not in use:
        return pd.DataFrame(columns=["model", "lr", "x", "avr"])
    use = use.dropna(subset=[GRAD_NOISE, A_AVR])
    return pd.DataFrame({"model": use["label"], "lr": use["lr"], "x": use[GRAD_NOISE], "avr": use[A_AVR]})


def eq2_points(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 7's data: one row per clean run of an (optimizer) grid the eq. 2 test covers (>= 2 lrs, >= 2 batch
    sizes): optimizer, lr, batch_size, avr."""
    use = clean_runs(learned_runs(runs))
    use = use[use["dataset"] == dataset].dropna(subset=[A_AVR, "batch_size"]) if A_AVR in use else use.iloc[0:0]
    tested = [o for o, g in use.groupby("optimizer") if g["lr"].nunique() > 1 and g["batch_size"].nunique() > 1]
    use = use[use["optimizer"].isin(tested)]
    return pd.DataFrame(
        {"optimizer": use["optimizer"], "lr": use["lr"], "batch_size": use["batch_size"], "avr": use[A_AVR]}
    )


def frontier_points(runs: pd.DataFrame, comparisons: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 8's data: per frontier row of `dataset` (analysis.frontier), each configuration of its lr sweep and
    of its train-noise sweep as mean baseline and A_avr with 95 % CIs."""
    use = learned_runs(runs)
    rows = []
    for f in comparisons[comparisons["dataset"] == dataset].itertuples():
        mine = use[
            (use["dataset"] == dataset)
            & (use["model"] == f.model)
            & (use["optimizer"] == f.optimizer)
            & ((use["batch_size"] == f.batch_size) | pd.isna(f.batch_size))
        ].dropna(subset=[A_AVR])
        panel = f"{f.model} {f.optimizer}" + (f" B={int(f.batch_size)}" if pd.notna(f.batch_size) else "")
        sweeps = (
            (frontier.LR_TUNING, mine[mine["train_noise"] == 0], "lr", lambda v: f"lr {v:g}"),
            (
                frontier.NOISE_TRAINING,
                mine[mine["lr"] == f.noise_lr],
                "train_noise",
                lambda v: f"eta {v:g}" if v else "",
            ),
        )  # eta 0 is the lr sweep's point at that lr: named once
        for method, sweep, axis, name in sweeps:
            for value, group in sweep.groupby(axis):
                base, base_ci, n = stats.mean_ci(group[BASELINE])
                avr, avr_ci, _ = stats.mean_ci(group[A_AVR])
                rows.append(
                    {
                        "model": panel,
                        "method": method,
                        "setting": name(value),
                        "baseline": base,
                        "baseline_ci95": base_ci,
                        "avr": avr,
                        "avr_ci95": avr_ci,
                        "n": n,
                        "target": f.target_accuracy,
                    }
                )
    return pd.DataFrame(
        rows, columns=["model", "method", "setting", "baseline", "baseline_ci95", "avr", "avr_ci95", "n", "target"]
    )


# ---------------------------------------------------------------- building (data) and writing (files)
@dataclass
class ConfigReport:
    """Everything one noise configuration's report holds, as data."""

    info: ConfigInfo
    runs: pd.DataFrame
    tables: dict  # stem -> (title, {dataset: formatted block} or a frame)
    frames: dict  # file name -> frame written as csv
    figures: dict  # file stem -> Figure
    sweet_spots: pd.DataFrame
    missing: list
    verdicts: dict  # verdicts.TABLES' frames: the lr claims, axis effects, interactions, eq. 2, the frontier
    max_accuracy_drop: float = 0.01  # the accuracy margin of the sweet spots and the frontier

    @property
    def claims(self) -> pd.DataFrame:
        return self.verdicts["claims"]


@dataclass
class Report:
    out: Path
    configs: list  # ConfigReport per configuration
    figures: dict = field(default_factory=dict)  # across configurations (fig5)
    files: list = field(default_factory=list)
    experiment_id: str = ""
    semantics: str = ""  # results.semantics_note: set when the runs were not all made under this code's semantics
    experiment: str = ""
    family: verdicts.Family | None = None  # the verdicts of every configuration, together

    @property
    def main(self) -> ConfigReport:
        return self.configs[0]

    @property
    def runs(self) -> pd.DataFrame:
        return self.main.runs

    @property
    def sweet_spots(self) -> pd.DataFrame:
        return self.main.sweet_spots

    @property
    def missing(self) -> list:
        return self.main.missing


def build_config(
    runs: pd.DataFrame,
    evals: pd.DataFrame,
    info: ConfigInfo,
    optimizer: str | None,
    max_accuracy_drop: float,
    target_accuracy: float | None = None,
) -> ConfigReport:
    joined = join(runs, evals, info)
    table_optimizer = optimizer or "adam"
    label = f"{info.name}; {table_optimizer}; mean ±95 % CI over seeds (n)"
    tables = {
        "table2_baseline_accuracy": (
            f"Table II: baseline (clean) test accuracy ({label})",
            table(joined, BASELINE, table_optimizer, learned_only=False),
        ),
        "table3_avg_normalized_accuracy": (
            f"Table III: average normalised accuracy A_avr ({label})",
            table(joined, A_AVR, table_optimizer, learned_only=True),
        ),
    }
    frames = {
        "runs.csv": joined,
        "table2_baseline_accuracy.csv": cells(joined, BASELINE),
        "table3_avg_normalized_accuracy.csv": cells(learned_runs(joined), A_AVR),
    }
    figs = {}
    optimizers = optimizer_table(joined)
    frames["table_optimizers.csv"] = optimizers
    if len(optimizers):
        tables["table_optimizers"] = (f"Optimizers, Figure 3's data ({info.name})", optimizers.set_index("optimizer"))
        first = optimizers.iloc[0]
        figs["fig3_optimizers"] = figures.optimizers(
            optimizers.rename(columns={BASELINE: "baseline", A_AVR: "avr", "runs": "n"}),
            f"Figure 3: optimizers, {first['model']} on {first['dataset']}, lr {first['lr']:g} ({info.name}; "
            "bars: 95 % CI over seeds)",
        )
    level_label = figures.level_axis_label(info.level_name)
    for dataset in sorted(joined[joined["optimizer"] == "adam"]["dataset"].unique()):
        curves = curve_points(joined, info, dataset)
        if len(curves):
            figs[f"fig1_noise_curves_{dataset}"] = figures.noise_curves(
                curves,
                f"Normalised accuracy vs {level_label} ({dataset}, Adam, {info.name}; bars: 95 % CI)",
                level_label,
                log_x=info.level_name == "t",
                tick_text=lambda level: injection.level_label(info.level_name, level),
            )
        points = tradeoff_points(joined, dataset)
        if len(points):
            figs[f"fig4_tradeoff_{dataset}"] = figures.tradeoff(
                points,
                f"Accuracy / noise-resistance trade-off vs lr ({dataset}, Adam, {info.name}; bars: 95 % CI)",
                "A_avr",
            )
        mech = mechanism_points(joined, dataset)
        if len(mech):
            figs[f"fig6_mechanism_{dataset}"] = figures.mechanism(
                mech,
                f"A_avr vs gradient-noise power lr^2 C / B, mean over training ({dataset}, {info.name})",
                "gradient-noise power (eq. 2 bound)",
            )
    verdict_tables = verdicts.tables(joined, max_accuracy_drop, target_accuracy)
    frames.update({f"{name}.csv": frame for name, frame in verdict_tables.items()})  # for machines; claims.md: a person
    for dataset in sorted(joined["dataset"].unique()):
        points = eq2_points(joined, dataset)
        if len(points):
            figs[f"fig7_eq2_{dataset}"] = figures.eq2_collapse(
                points,
                f"A_avr vs lr^2 / B (eq. 2) and vs lr / B (SDE noise scale), coloured by batch size: one curve on "
                f"the panel of the quantity that sets A_avr ({dataset}, {info.name}; bars: 95 % CI over seeds)",
            )
        points = frontier_points(joined, verdict_tables["frontier"], dataset)
        if len(points):
            figs[f"fig8_frontier_{dataset}"] = figures.frontier(
                points,
                f"Accuracy-robustness frontier: lr tuning vs noise-injection training ({dataset}, "
                f"{info.name}; bars: 95 % CI over seeds)",
            )
    spots = sweet_spots(joined, max_accuracy_drop)
    frames["sweet_spot.csv"] = spots
    if info.is_paper:
        comparison = paper_comparison(joined)
        frames["paper_comparison.csv"] = comparison
        tables["paper_comparison"] = (
            "Ours vs the paper (matching dataset, model, optimizer, lr; additive-paper)",
            _comparison_text(comparison),
        )
    return ConfigReport(
        info, joined, tables, frames, figs, spots, missing_configurations(joined), verdict_tables, max_accuracy_drop
    )


def _comparison_text(comparison: pd.DataFrame) -> pd.DataFrame:
    shown = comparison.assign(
        **{c: comparison[c].map(_pct) for c in ("ours", "paper")},
        difference=comparison["difference"].map(lambda d: f"{d * 100:+.2f} pp"),
    )
    return shown.set_index("table")


def noise_model_lines(configs: list[ConfigReport]) -> dict[str, pd.DataFrame]:
    """Figure 5's data per dataset: A_avr (mean, CI, n) against lr, a line per configuration, Adam."""
    frames = {}
    for report in configs:
        adam = clean_runs(learned_runs(report.runs))
        adam = adam[adam["optimizer"] == "adam"]
        for row in cells(adam, A_AVR).itertuples():
            frames.setdefault(row.dataset, []).append(
                {
                    "config": report.info.name,
                    "model": row.label,
                    "lr": row.lr,
                    "avr": row.mean,
                    "avr_ci95": row.ci95,
                    "n": row.n,
                }
            )
    return {dataset: pd.DataFrame(rows) for dataset, rows in frames.items()}


def build(
    experiment: str = names.DEFAULT_EXPERIMENT,
    dataset=None,
    model=None,
    optimizer=None,
    noise_config: str = injection.PAPER.name,
    max_accuracy_drop: float = 0.01,
    target_accuracy: float | None = None,
) -> Report:
    """The report of one configuration (name or key) or of every one found ('all'), as data; writes nothing."""
    runs, evals, exp_id = fetch(experiment, dataset, model, optimizer)
    chosen = choose(configurations(evals), noise_config)
    configs = [build_config(runs, evals, info, optimizer, max_accuracy_drop, target_accuracy) for info in chosen]
    family = verdicts.assess({config.info.name: config.verdicts for config in configs})
    figs = {}
    if len(configs) > 1:
        for name, lines in noise_model_lines(configs).items():
            figs[f"fig5_noise_models_{name}"] = figures.noise_models(
                lines,
                f"Does the lr effect survive hardware noise? A_avr vs lr per noise configuration ({name}, "
                "Adam; bars: 95 % CI)",
            )
    return Report(
        Path("."),
        configs,
        figs,
        experiment_id=exp_id,
        semantics=semantics_note(runs, evals),
        experiment=experiment,
        family=family,
    )


def write(report: Report, out: Path, pdf: bool = True) -> Report:
    """Writes every table (csv, md, tex) and figure (png and, with `pdf`, pdf) into a fresh folder, then swaps it
    in whole for `out`: no file of an earlier report survives. One sub-folder per configuration when there are
    several."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    several = len(report.configs) > 1
    for config in report.configs:
        folder = fresh / config.info.name if several else fresh
        folder.mkdir(exist_ok=True)
        _write_config(config, folder, pdf, report.semantics, report.family)
    for stem, fig in report.figures.items():
        figures.save(fig, fresh / stem, vector=pdf)
    (fresh / HTML_PAGE).write_text(_html(report, fresh))
    _swap_in(fresh, out)
    report.out = out
    report.files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return report


def claims_text(config: ConfigReport, family: verdicts.Family | None) -> str:
    """A configuration's claims in words (claims.md, and its part of report.html)."""
    return claims_markdown(config.verdicts, config.info.name, family)


def _write_config(
    config: ConfigReport, folder: Path, pdf: bool, semantics: str = "", family: verdicts.Family | None = None
) -> None:
    for name, frame in config.frames.items():
        frame.to_csv(folder / name, index=False)
    for stem, (title, content) in config.tables.items():
        blocks = content if isinstance(content, dict) else {"": content}
        md, tex = [f"# {title}"], [f"% {title}"]
        for dataset, block in blocks.items():
            if dataset:
                md.append(f"\n## {dataset} (columns: learning rate)\n")
                tex.append(f"% {dataset}")
            md.append(block.to_markdown() if len(block) else "(none)")
            tex.append(block.to_latex() if len(block) else "% (none)")
        (folder / f"{stem}.md").write_text("\n".join(md) + "\n")
        (folder / f"{stem}.tex").write_text("\n".join(tex) + "\n")
    (folder / "claims.md").write_text(claims_text(config, family) + (f"\n{semantics}\n" if semantics else ""))
    (folder / "missing.txt").write_text("\n".join(config.missing) + ("\n" if config.missing else "none\n"))
    for stem, fig in config.figures.items():
        figures.save(fig, folder / stem, vector=pdf)


HTML_PAGE = "report.html"  # the whole report on one self-contained page (report_html)


def _html(report: Report, folder: Path) -> str:
    """report.html's text: each configuration's claims, tables and the png figures `write` saved in `folder`."""
    several = len(report.configs) > 1
    sections = []
    for config in report.configs:
        own = folder / config.info.name if several else folder
        sections.append(
            report_html.Section(
                config.info.name,
                claims_text(config, report.family),
                report_html.table_frames(config.tables),
                [own / f"{stem}.png" for stem in config.figures],
                config.missing,
            )
        )
    if report.figures:
        across = [folder / f"{stem}.png" for stem in report.figures]
        sections.append(report_html.Section("across noise configurations", "", {}, across, None))
    where = tracking.where_to_look(report.experiment_id) if report.experiment_id else ""
    title = f"lrnoise report: experiment {report.experiment}" if report.experiment else "lrnoise report"
    return report_html.page(title, sections, report.semantics, where)


def _swap_in(fresh: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old-{fresh.name}")
        out.rename(old)
    fresh.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def set_sweet_spot_aliases(report: Report) -> list[str]:
    """Points the registry alias `noise-robust` (another configuration: noise-robust-<name>; with several batch
    sizes, each its own: noise-robust-b8, noise-robust-b32, ...) at each sweet spot's model version, so no two
    sweet spots move one alias; returns 'name/version' of each."""
    moved = []
    for config in report.configs:
        alias = SWEET_SPOT_ALIAS if config.info.is_paper else f"{SWEET_SPOT_ALIAS}-{config.info.name}"
        spots = config.sweet_spots
        for run_id, suffix in zip(spots.get("run_id", []), spots.get("alias_suffix", [])):
            version = tracking.set_alias_for_run(run_id, f"{alias}{suffix}")
            if version:
                moved.append(version)
    return moved


def build_and_write(
    experiment: str = names.DEFAULT_EXPERIMENT,
    out: str | Path | None = None,
    dataset=None,
    model=None,
    optimizer=None,
    noise_config: str = injection.PAPER.name,
    max_accuracy_drop: float = 0.01,
    log_run: bool = True,
    set_alias: bool = True,
    pdf: bool = True,
    target_accuracy: float | None = None,
) -> Report:
    """`lrnoise report`: build, write into `out` (default reports/<experiment>; figures as png, and as pdf with
    `pdf`), move the sweet-spot aliases, log everything as a `report` run. `target_accuracy`: the frontier's
    accuracy target (default: from the eta = 0 configuration, lrnoise.analysis.frontier)."""
    report = build(experiment, dataset, model, optimizer, noise_config, max_accuracy_drop, target_accuracy)
    write(report, Path(out or Path("reports") / experiment), pdf)
    if set_alias:
        set_sweet_spot_aliases(report)
    if log_run:
        tracking.log_report(report.experiment_id, report.out)
    return report


# ---------------------------------------------------------------- the console summary
def summary_text(report: Report) -> str:
    """What `lrnoise report` prints: the main configuration's two tables, sweet spots, verdicts, the files."""
    main = report.main
    parts = [report.semantics] if report.semantics else []
    for stem in ("table2_baseline_accuracy", "table3_avg_normalized_accuracy"):
        title, blocks = main.tables[stem]
        parts.append(f"{title}")
        parts += [f"{dataset}\n{block.to_markdown()}" for dataset, block in blocks.items()]
    if len(main.sweet_spots):
        parts.append("Sweet spot (highest A_avr within the accuracy margin of the best lr):")
        parts += [
            f"  {r['dataset']} {r['model']}: lr {r['lr']:g}  a_0 {r[BASELINE]:.2%}  A_avr {r[A_AVR]:.2%}"
            for _, r in main.sweet_spots.iterrows()
        ]
    if report.family is not None:
        parts.append(report.family.sentence())
    for primary in (True, False):
        parts.append("Primary verdicts:" if primary else "Exploratory verdicts:")
        for config in report.configs:
            parts += [f"[{config.info.name}] {line}" for line in verdict_lines(config.verdicts, primary)]
    parts.append(f"{len(main.missing)} configurations missing" + (":" if main.missing else ""))
    parts += [f"  {line}" for line in main.missing[:20]]
    parts.append(files_line(report))
    return "\n".join(parts)


FIRST_FILES = ("claims.md", "table3_avg_normalized_accuracy.md", "fig4_tradeoff_")  # what a person opens first


def files_line(report: Report) -> str:
    """'62 files in reports/lrnoise; open first: report.html, additive-paper/claims.md, ...': the folder, the
    count, the one-page report, and the claims, Table III and Figure 4 of the main configuration (not the list of
    every file)."""
    folder = f"{report.main.info.name}/" if len(report.configs) > 1 else ""  # several: one sub-folder each
    first = [HTML_PAGE if HTML_PAGE in report.files else None] + [
        next((f for f in report.files if f.startswith(f"{folder}{stem}") and f.endswith((".md", ".png"))), None)
        for stem in FIRST_FILES
    ]
    shown = ", ".join(f for f in first if f)
    return f"{len(report.files)} files in {report.out}" + (f"; open first: {shown}" if shown else "")
