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

from lrnoise import figures, noise, noise_models, paper, stats, tracking
from lrnoise.errors import LrnoiseError

# What identifies a cell; its runs are seeds and are averaged. `label` names a row of a table or a line of a
# figure: the model, with its batch size when the experiment has several (row_labels).
CONFIG = ["dataset", "model", "optimizer", "batch_size", "train_noise", "label", "lr"]
BASELINE = tracking.BASELINE_ACCURACY
A_AVR = tracking.AVG_NORMALIZED_ACCURACY
A_AVR_DRAW_CI = "avg_normalized_accuracy_ci95"  # one run's A_avr CI over its draws (report column, not a metric)
LEARNED = "learned"
GRAD_NOISE = tracking.GRAD_NOISE_POWER_MEAN
SWEET_SPOT_ALIAS = "noise-robust"
MISSING = "—"
NO_LEARNING = "no learning"
ALL = "all"


# ---------------------------------------------------------------- fetching and joining
@dataclass(frozen=True)
class ConfigInfo:
    """A noise configuration as found in the store: key, name, level axis and levels."""
    key: str
    name: str
    level_name: str  # eta | t
    levels: tuple

    @property
    def is_paper(self) -> bool:
        return self.name == noise.PAPER.name


def fetch(experiment: str, dataset=None, model=None, optimizer=None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(finished training runs, finished noise evaluations, experiment id): two paged searches."""
    exp = tracking.find_experiment(experiment)
    filters = {k: v for k, v in {"dataset": dataset, "model": model, "optimizer": optimizer}.items() if v}
    runs = tracking.train_runs_frame(exp.experiment_id, filters)
    if runs.empty:
        raise LrnoiseError(f"experiment {experiment!r} has no finished training runs"
                           + (" matching the filters" if filters else ""))
    runs = row_labels(stats.with_axes(runs))
    runs["seed"] = runs["seed"].astype(int)
    runs = runs.sort_values(CONFIG + ["seed"]).reset_index(drop=True)
    return runs, tracking.noise_runs_frame(exp.experiment_id), exp.experiment_id


def configurations(evals: pd.DataFrame) -> list[ConfigInfo]:
    """Every noise configuration evaluated in the store, the paper's first."""
    found = {}
    for row in evals.drop_duplicates("noise_config").itertuples() if not evals.empty else ():
        fields = row.config_fields
        model = noise_models.NOISE_MODELS.get(fields.get("noise"))
        if model is None:
            continue
        levels = tuple(float(x) for x in fields.get("levels", "").split(",") if x)
        found[row.noise_config] = ConfigInfo(row.noise_config, row.noise_config_name, model.level_name, levels)
    return sorted(found.values(), key=lambda c: (not c.is_paper, c.name))


def choose(found: list[ConfigInfo], wanted: str) -> list[ConfigInfo]:
    """The configurations `wanted` names: a name, a key (or its first 6+ characters), or 'all'. The paper's
    configuration is always available (its Table II stands even before any evaluation)."""
    paper_info = ConfigInfo(noise.PAPER.key, noise.PAPER.name, "eta", noise.PAPER.levels)
    if wanted == ALL:
        return found or [paper_info]
    match = [c for c in found if wanted in (c.name, c.key) or (len(wanted) >= 6 and c.key.startswith(wanted))]
    if match:
        return match[:1]
    if wanted in (paper_info.name, paper_info.key):
        return [paper_info]
    names = ", ".join(c.name for c in found) or "none"
    raise LrnoiseError(f"no noise evaluation with configuration {wanted!r} in this experiment: found {names} "
                       f"(or pass --noise-config all)")


def level_columns(info: ConfigInfo) -> list[tuple[float, str, str]]:
    """(level, A^x metric, its CI metric) of a configuration, in level order."""
    out = []
    for level in sorted(info.levels):
        label = noise.level_label(info.level_name, level)
        out.append((level, tracking.level_metric(tracking.NORMALIZED_ACCURACY, info.level_name, label),
                    tracking.level_metric(tracking.NORMALIZED_ACCURACY_CI95, info.level_name, label)))
    return out


def join(runs: pd.DataFrame, evals: pd.DataFrame, info: ConfigInfo) -> pd.DataFrame:
    """One row per training run with this configuration's A_avr and A^x (NaN where not evaluated). A model
    evaluated several times under the configuration (other trials or seeds) gets the mean of its evaluations."""
    columns = [c for _, a, ci in level_columns(info) for c in (a, ci)] + [A_AVR, tracking.NONFINITE_DRAWS]
    mine = evals[evals["noise_config"] == info.key] if not evals.empty else pd.DataFrame(columns=["run_id"])
    mine = mine.reindex(columns=["run_id", *columns])
    per_run = mine.groupby("run_id")[columns].mean(numeric_only=False).reset_index() if len(mine) else \
        pd.DataFrame(columns=["run_id", *columns])
    own = [c for c in runs.columns if c not in columns or c == "run_id"]  # the paper's names also sit on runs
    joined = runs[own].merge(per_run, on="run_id", how="left")
    for column in columns:
        joined[column] = pd.to_numeric(joined[column], errors="coerce")
    # A_avr's 95 % CI over one run's draws: the levels' draws are independent, A_avr their mean over L levels
    level_cis = [ci for _, _, ci in level_columns(info)]
    joined[A_AVR_DRAW_CI] = np.sqrt((joined[level_cis] ** 2).sum(axis=1, min_count=1)) / len(level_cis)
    return joined


def row_labels(runs: pd.DataFrame) -> pd.DataFrame:
    """runs with `label`: the model, plus " B=<batch size>" when the runs have several batch sizes."""
    several = runs["batch_size"].nunique(dropna=False) > 1
    return runs.assign(label=[_label(m, b, several) for m, b in zip(runs["model"], runs["batch_size"])])


def _label(model: str, batch_size, several: bool) -> str:
    return f"{model} B={int(batch_size)}" if several and pd.notna(batch_size) else model


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
        rows.append({**dict(zip(CONFIG, key)), "mean": mean, "std": float(np.std(values, ddof=1)) if n > 1 else 0.0,
                     "ci95": ci, "n": n})
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
    subset = runs[(runs["dataset"] == dataset) & (runs["model"] == model) & (runs["lr"] == lr)
                  & ((runs["batch_size"] == batch_size) | pd.isna(batch_size))]
    base = cells(subset, BASELINE).set_index("optimizer")
    avr = cells(learned_runs(subset), A_AVR).set_index("optimizer") if A_AVR in subset else pd.DataFrame()
    order = [o for o in paper.OPTIMIZERS if o in set(subset["optimizer"])]

    def get(frame, column, o, default=np.nan):
        return frame[column].get(o, default) if column in frame else default

    return pd.DataFrame({"dataset": dataset, "model": model, "batch_size": batch_size, "lr": lr, "optimizer": order,
                         BASELINE: [get(base, "mean", o) for o in order],
                         "baseline_ci95": [get(base, "ci95", o) for o in order],
                         A_AVR: [get(avr, "mean", o) for o in order],
                         "avr_ci95": [get(avr, "ci95", o) for o in order],
                         "runs": [int(get(base, "n", o, 0)) for o in order]})


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
                rows.append({"table": "II" if value == BASELINE else "III", "dataset": row.dataset,
                             "model": row.label, "optimizer": "adam", "lr": row.lr, "metric": value,
                             "ours": row.mean, "paper": published[key], "difference": row.mean - published[key]})
    study = paper.OPTIMIZER_STUDY
    for value, published in ((BASELINE, paper.OPTIMIZER_BASELINE_ACCURACY),
                             (A_AVR, paper.OPTIMIZER_AVG_NORMALIZED_ACCURACY)):
        for row in cells(runs, value).itertuples():
            if (row.dataset, row.model, row.lr) == (study["dataset"], study["model"], study["lr"]) \
                    and row.optimizer != "adam" and row.optimizer in published:
                rows.append({"table": "Fig. 3", "dataset": row.dataset, "model": row.label,
                             "optimizer": row.optimizer, "lr": row.lr, "metric": value, "ours": row.mean,
                             "paper": published[row.optimizer], "difference": row.mean - published[row.optimizer]})
    return pd.DataFrame(rows, columns=["table", "dataset", "model", "optimizer", "lr", "metric", "ours", "paper",
                                       "difference"])


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
        rows.append({"dataset": dataset, "model": model, "lr": lr, BASELINE: at[BASELINE].mean(),
                     A_AVR: at[A_AVR].mean(), "run_id": at.loc[at[A_AVR].idxmax(), "run_id"],
                     "best_" + BASELINE: group.groupby("lr")[BASELINE].mean().max()})
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
            label = _label(model, batch_size, several)
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
    return pd.DataFrame({"model": merged["label"], "lr": merged["lr"], "baseline": merged["mean_b"],
                         "baseline_ci95": merged["ci95_b"], "robust": merged["mean_r"],
                         "robust_ci95": merged["ci95_r"], "n": merged["n_r"]})


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
    return pd.DataFrame({"optimizer": use["optimizer"], "lr": use["lr"], "batch_size": use["batch_size"],
                         "avr": use[A_AVR]})


def frontier_points(runs: pd.DataFrame, frontier: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 8's data: per frontier row of `dataset` (stats.frontier), each configuration of its lr sweep and
    of its train-noise sweep as mean baseline and A_avr with 95 % CIs."""
    use = learned_runs(runs)
    rows = []
    for f in frontier[frontier["dataset"] == dataset].itertuples():
        mine = use[(use["dataset"] == dataset) & (use["model"] == f.model) & (use["optimizer"] == f.optimizer)
                   & ((use["batch_size"] == f.batch_size) | pd.isna(f.batch_size))].dropna(subset=[A_AVR])
        panel = f"{f.model} {f.optimizer}" + (f" B={int(f.batch_size)}" if pd.notna(f.batch_size) else "")
        sweeps = ((stats.LR_TUNING, mine[mine["train_noise"] == 0], "lr", lambda v: f"lr {v:g}"),
                  (stats.NOISE_TRAINING, mine[mine["lr"] == f.noise_lr], "train_noise",
                   lambda v: f"eta {v:g}" if v else ""))  # eta 0 is the lr sweep's point at that lr: named once
        for method, sweep, axis, name in sweeps:
            for value, group in sweep.groupby(axis):
                base, base_ci, n = stats.mean_ci(group[BASELINE])
                avr, avr_ci, _ = stats.mean_ci(group[A_AVR])
                rows.append({"model": panel, "method": method, "setting": name(value), "baseline": base,
                             "baseline_ci95": base_ci, "avr": avr, "avr_ci95": avr_ci, "n": n})
    return pd.DataFrame(rows, columns=["model", "method", "setting", "baseline", "baseline_ci95", "avr", "avr_ci95",
                                       "n"])


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
    claims: pd.DataFrame
    axis_claims: pd.DataFrame = field(default_factory=pd.DataFrame)  # trends over batch size and train noise
    eq2: pd.DataFrame = field(default_factory=pd.DataFrame)  # does only lr^2 / B matter? (stats.eq2_test)
    frontier: pd.DataFrame = field(default_factory=pd.DataFrame)  # lr tuning vs noise-injection training
    max_accuracy_drop: float = 0.01  # the accuracy margin of the sweet spots and the frontier


@dataclass
class Report:
    out: Path
    configs: list  # ConfigReport per configuration
    figures: dict = field(default_factory=dict)  # across configurations (fig5)
    files: list = field(default_factory=list)
    experiment_id: str = ""

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


def build_config(runs: pd.DataFrame, evals: pd.DataFrame, info: ConfigInfo, optimizer: str | None,
                 max_accuracy_drop: float) -> ConfigReport:
    joined = join(runs, evals, info)
    table_optimizer = optimizer or "adam"
    label = f"{info.name}; {table_optimizer}; mean ±95 % CI over seeds (n)"
    tables = {
        "table2_baseline_accuracy": (f"Table II: baseline (clean) test accuracy ({label})",
                                     table(joined, BASELINE, table_optimizer, learned_only=False)),
        "table3_avg_normalized_accuracy": (f"Table III: average normalised accuracy A_avr ({label})",
                                           table(joined, A_AVR, table_optimizer, learned_only=True)),
    }
    frames = {"runs.csv": joined, "table2_baseline_accuracy.csv": cells(joined, BASELINE),
              "table3_avg_normalized_accuracy.csv": cells(learned_runs(joined), A_AVR)}
    figs = {}
    optimizers = optimizer_table(joined)
    frames["table_optimizers.csv"] = optimizers
    if len(optimizers):
        tables["table_optimizers"] = (f"Optimizers, Figure 3's data ({info.name})", optimizers.set_index("optimizer"))
        first = optimizers.iloc[0]
        figs["fig3_optimizers"] = figures.optimizers(
            optimizers.rename(columns={BASELINE: "baseline", A_AVR: "avr", "runs": "n"}),
            f"Figure 3: optimizers, {first['model']} on {first['dataset']}, lr {first['lr']:g} ({info.name}; "
            "bars: 95 % CI over seeds)")
    level_label = figures.level_axis_label(info.level_name)
    for dataset in sorted(joined[joined["optimizer"] == "adam"]["dataset"].unique()):
        curves = curve_points(joined, info, dataset)
        if len(curves):
            figs[f"fig1_noise_curves_{dataset}"] = figures.noise_curves(
                curves, f"Normalised accuracy vs {level_label} ({dataset}, Adam, {info.name}; bars: 95 % CI)",
                level_label, log_x=info.level_name == "t",
                tick_text=lambda level: noise.level_label(info.level_name, level))
        points = tradeoff_points(joined, dataset)
        if len(points):
            figs[f"fig4_tradeoff_{dataset}"] = figures.tradeoff(
                points, f"Accuracy / noise-resistance trade-off vs lr ({dataset}, Adam, {info.name}; bars: 95 % CI)",
                "A_avr")
        mech = mechanism_points(joined, dataset)
        if len(mech):
            figs[f"fig6_mechanism_{dataset}"] = figures.mechanism(
                mech, f"A_avr vs gradient-noise power lr^2 C / B, mean over training ({dataset}, {info.name})",
                "gradient-noise power (eq. 2 bound)")
    claims = stats.claims(joined, max_accuracy_drop) if A_AVR in joined else pd.DataFrame()
    frames["claims.csv"] = claims  # for machines; claims.md (claims_markdown) is for a person
    mechanism = _mechanism_tests(joined, max_accuracy_drop)
    frames.update({"axis_claims.csv": mechanism[0], "eq2.csv": mechanism[1], "frontier.csv": mechanism[2]})
    for dataset in sorted(joined["dataset"].unique()):
        points = eq2_points(joined, dataset)
        if len(points):
            figs[f"fig7_eq2_{dataset}"] = figures.eq2_collapse(
                points, f"A_avr vs lr^2 / B, coloured by batch size: one curve if eq. 2's noise is the mechanism "
                        f"({dataset}, {info.name}; bars: 95 % CI over seeds)")
        points = frontier_points(joined, mechanism[2], dataset)
        if len(points):
            figs[f"fig8_frontier_{dataset}"] = figures.frontier(
                points, f"Accuracy-robustness frontier: lr tuning vs noise-injection training ({dataset}, "
                        f"{info.name}; bars: 95 % CI over seeds)")
    spots = sweet_spots(joined, max_accuracy_drop)
    frames["sweet_spot.csv"] = spots
    if info.is_paper:
        comparison = paper_comparison(joined)
        frames["paper_comparison.csv"] = comparison
        tables["paper_comparison"] = ("Ours vs the paper (matching dataset, model, optimizer, lr; additive-paper)",
                                      _comparison_text(comparison))
    return ConfigReport(info, joined, tables, frames, figs, spots, missing_configurations(joined), claims,
                        *mechanism, max_accuracy_drop)


def _mechanism_tests(joined: pd.DataFrame, max_accuracy_drop: float) -> tuple:
    """(claims over batch size and train noise, eq. 2 tests on A_avr and on the measured noise powers, the
    lr-tuning vs noise-injection frontier), each an empty frame where the runs do not span it."""
    if A_AVR not in joined:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    axis = pd.concat([stats.axis_claims(joined, a) for a in stats.AXES[1:]], ignore_index=True)
    eq2 = [stats.eq2_test(joined, A_AVR)] + [stats.eq2_test(joined, power, log_value=True)
                                             for power in (GRAD_NOISE, tracking.UPDATE_NOISE_POWER_MEAN)
                                             if power in joined]
    return axis, pd.concat(eq2, ignore_index=True), stats.frontier(joined, max_accuracy_drop)


def _comparison_text(comparison: pd.DataFrame) -> pd.DataFrame:
    shown = comparison.assign(**{c: comparison[c].map(_pct) for c in ("ours", "paper")},
                              difference=comparison["difference"].map(lambda d: f"{d * 100:+.2f} pp"))
    return shown.set_index("table")


def noise_model_lines(configs: list[ConfigReport]) -> dict[str, pd.DataFrame]:
    """Figure 5's data per dataset: A_avr (mean, CI, n) against lr, a line per configuration, Adam."""
    frames = {}
    for report in configs:
        adam = clean_runs(learned_runs(report.runs))
        adam = adam[adam["optimizer"] == "adam"]
        for row in cells(adam, A_AVR).itertuples():
            frames.setdefault(row.dataset, []).append({"config": report.info.name, "model": row.label, "lr": row.lr,
                                                       "avr": row.mean, "avr_ci95": row.ci95, "n": row.n})
    return {dataset: pd.DataFrame(rows) for dataset, rows in frames.items()}


def build(experiment: str = tracking.DEFAULT_EXPERIMENT, dataset=None, model=None, optimizer=None,
          noise_config: str = noise.PAPER.name, max_accuracy_drop: float = 0.01) -> Report:
    """The report of one configuration (name or key) or of every one found ('all'), as data; writes nothing."""
    runs, evals, exp_id = fetch(experiment, dataset, model, optimizer)
    chosen = choose(configurations(evals), noise_config)
    configs = [build_config(runs, evals, info, optimizer, max_accuracy_drop) for info in chosen]
    figs = {}
    if len(configs) > 1:
        for name, lines in noise_model_lines(configs).items():
            figs[f"fig5_noise_models_{name}"] = figures.noise_models(
                lines, f"Does the lr effect survive hardware noise? A_avr vs lr per noise configuration ({name}, "
                       "Adam; bars: 95 % CI)")
    return Report(Path("."), configs, figs, experiment_id=exp_id)


def write(report: Report, out: Path) -> Report:
    """Writes every table (csv, md, tex) and figure (png, pdf) into a fresh folder, then swaps it in whole
    for `out`: no file of an earlier report survives. One sub-folder per configuration when there are several."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    several = len(report.configs) > 1
    for config in report.configs:
        folder = fresh / config.info.name if several else fresh
        folder.mkdir(exist_ok=True)
        _write_config(config, folder)
    for stem, fig in report.figures.items():
        figures.save(fig, fresh / stem)
    _swap_in(fresh, out)
    report.out = out
    report.files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return report


def _write_config(config: ConfigReport, folder: Path) -> None:
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
    (folder / "claims.md").write_text(claims_markdown(config.claims, config.info.name, config.axis_claims,
                                                      config.eq2, config.frontier, config.max_accuracy_drop))
    (folder / "missing.txt").write_text("\n".join(config.missing) + ("\n" if config.missing else "none\n"))
    for stem, fig in config.figures.items():
        figures.save(fig, folder / stem)


def _swap_in(fresh: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old-{fresh.name}")
        out.rename(old)
    fresh.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def set_sweet_spot_aliases(report: Report) -> list[str]:
    """Points the registry alias `noise-robust` (another configuration: noise-robust-<name>) at each sweet
    spot's model version; returns 'name/version' of each."""
    moved = []
    for config in report.configs:
        alias = SWEET_SPOT_ALIAS if config.info.is_paper else f"{SWEET_SPOT_ALIAS}-{config.info.name}"
        for run_id in config.sweet_spots.get("run_id", []):
            version = tracking.set_alias_for_run(run_id, alias)
            if version:
                moved.append(version)
    return moved


def build_and_write(experiment: str = tracking.DEFAULT_EXPERIMENT, out: str | Path | None = None, dataset=None,
                    model=None, optimizer=None, noise_config: str = noise.PAPER.name,
                    max_accuracy_drop: float = 0.01, log_run: bool = True, set_alias: bool = True) -> Report:
    """`lrnoise report`: build, write into `out` (default reports/<experiment>), move the sweet-spot
    aliases, log everything as a `report` run."""
    report = build(experiment, dataset, model, optimizer, noise_config, max_accuracy_drop)
    write(report, Path(out or Path("reports") / experiment))
    if set_alias:
        set_sweet_spot_aliases(report)
    if log_run:
        tracking.log_report(report.experiment_id, report.out)
    return report


def _numbers(row, prefix: str) -> str:
    """'rho +0.84 [+0.73, +0.90]', or 'rho +0.94, no interval' when the verdict has none to give."""
    rho, low, high = row[f"{prefix}_rho"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    if not np.isfinite(rho):
        return "not computed"
    if row[f"{prefix}_verdict"] in (stats.TOO_FEW_SEEDS, stats.TOO_FEW_RUNS) or not np.isfinite(low):
        return f"rho {rho:+.2f}, no interval"
    return f"rho {rho:+.2f} [{low:+.2f}, {high:+.2f}]"


def claim_lines(row) -> list[str]:
    """One cell's claims in words, one line each: the verdict, then its numbers (Spearman rho, 95 % bootstrap
    interval over seeds)."""
    runs = f"{row['n_runs']} runs, {row['seeds_per_lr']} seeds per lr"
    lines = [f"A_avr {row['avr_verdict']}: {_numbers(row, 'avr')}, {runs}",
             f"baseline accuracy {row['baseline_verdict']}: {_numbers(row, 'baseline')}"]
    if np.isfinite(row["sweet_spot_lr"]):
        share = row["sweet_spot_share"]
        lines.append(f"sweet spot lr {row['sweet_spot_lr']:g}" + (f", chosen in {share:.0%} of resamples"
                                                                  if np.isfinite(share) else ""))
    for prefix, what in (("mechanism", "gradient-noise power"), ("update_mechanism", "update-noise power")):
        if row[f"{prefix}_verdict"] != stats.NOT_MEASURED:
            lines.append(f"{what} vs A_avr: {row[f'{prefix}_verdict']}, {_numbers(row, prefix)}")
    if np.isfinite(row["paper_avr_rho"]):
        paper_says = "falls" if row["paper_avr_rho"] < 0 else "rises" if row["paper_avr_rho"] > 0 else "is flat"
        agrees = {"yes": "agrees", "no": "does not agree"}.get(row["agrees_with_paper"], "cannot be compared")
        lines.append(f"the paper's Table III row: A_avr {paper_says} with lr (rho {row['paper_avr_rho']:+.2f}); "
                     f"this cell {agrees}")
    return lines


def _cell_name(row) -> str:
    """'digits · resnet20 · adam', with ' · B=64' and ' · train noise 5 %' where the row has them."""
    name = f"{row['dataset']} · {row['model']} · {row['optimizer']}"
    if "lr" in row and pd.notna(row.get("lr")):
        name += f" · lr {row['lr']:g}"
    if pd.notna(row.get("batch_size")):
        name += f" · B={int(row['batch_size'])}"
    if pd.notna(row.get("train_noise")) and row.get("train_noise"):
        name += f" · train noise {row['train_noise']:g}"
    return name


def axis_claim_line(row) -> str:
    """A claim over batch size or train noise in words: 'A_avr falls with batch_size: rho ... [..], ...'."""
    return (f"A_avr {row['avr_verdict']}: {_numbers(row, 'avr')}, {row['n_runs']} runs, {row['seeds_per_level']} "
            f"seeds per {row['axis']}; baseline accuracy {row['baseline_verdict']}: {_numbers(row, 'baseline')}")


def _interval(low: float, high: float, fmt: str) -> str:
    return "unbounded" if not (np.isfinite(low) and np.isfinite(high)) else f"[{low:{fmt}}, {high:{fmt}}]"


def eq2_line(row) -> str:
    """The eq. 2 test of one value in words: its verdict, the ratio b / a with its interval, both slopes."""
    if row["verdict"] == stats.TOO_FEW_SEEDS:
        return f"eq. 2 on {row['value']}: {stats.TOO_FEW_SEEDS} ({row['n_runs']} runs)"
    return (f"eq. 2 on {row['value']}: {row['verdict']}: slope ratio b/a {row['ratio']:+.2f} "
            f"{_interval(row['ratio_ci_low'], row['ratio_ci_high'], '+.2f')} (eq. 2: {stats.EQ2_RATIO:+.2f}); "
            f"per log lr {row['lr_slope']:+.3g} {_interval(row['lr_slope_ci_low'], row['lr_slope_ci_high'], '+.3g')}, "
            f"per log B {row['b_slope']:+.3g} {_interval(row['b_slope_ci_low'], row['b_slope_ci_high'], '+.3g')}, "
            f"joint effect p = {row['effect_p']:.3f}; {row['n_runs']} runs, {row['seeds_per_cell']} seeds per (lr, B)")


def frontier_line(row, max_accuracy_drop: float) -> str:
    """The lr-tuning vs noise-injection comparison in words."""
    def best(avr, at):
        return "none within the margin" if avr == stats._NOT_REACHED else f"{avr:.1%} ({at})"
    difference = (f"difference {row['difference'] * 100:+.1f} pp "
                  f"{_interval(row['ci_low'] * 100, row['ci_high'] * 100, '+.1f')}"
                  if np.isfinite(row["difference"]) else "no A_avr difference to state")
    if row["both_reach_share"] < 0.975:  # the verdict also weighs resamples in which a method falls short
        difference += (f"; in {1 - row['both_reach_share']:.0%} of resamples one method has no configuration "
                       "within the margin")
    return (f"{row['verdict']}: best A_avr within {max_accuracy_drop:.0%} of the best baseline "
            f"({row['reference_baseline']:.1%}): {stats.NOISE_TRAINING} "
            f"{best(row['noise_best_avr'], f'eta {row.noise_best_train_noise:g} at lr {row.noise_lr:g}')}, "
            f"{stats.LR_TUNING} {best(row['lr_best_avr'], f'lr {row.lr_best_lr:g}')}; {difference}")


def claims_markdown(claims: pd.DataFrame, config_name: str, axis_claims: pd.DataFrame | None = None,
                    eq2: pd.DataFrame | None = None, frontier: pd.DataFrame | None = None,
                    max_accuracy_drop: float = 0.01) -> str:
    """claims.md: per cell, each claim of the paper in words with its numbers; then the mechanism tests (claims
    over batch size and train noise, eq. 2, lr tuning vs noise-injection training) where the runs span them."""
    parts = [f"# The paper's claims, answered over seeds ({config_name})", "",
             "Verdicts are 95 % bootstrap intervals over seeds of Spearman's rho against the learning rate "
             "(docs/statistics.md)."]
    for _, row in claims.iterrows():
        parts += ["", f"## {_cell_name(row)}", ""]
        parts += [f"- {line}" for line in claim_lines(row)]
    if not len(claims):
        parts += ["", "No cell has runs at three or more learning rates yet."]
    sections = (("Over batch size and train noise (the other axes fixed)", axis_claims,
                 lambda r: f"{_cell_name(r)}: {axis_claim_line(r)}"),
                ("Eq. 2: does only lr^2 / B matter?", eq2, lambda r: f"{_cell_name(r)}: {eq2_line(r)}"),
                ("lr tuning vs noise-injection training", frontier,
                 lambda r: f"{_cell_name(r)}: {frontier_line(r, max_accuracy_drop)}"))
    for title, frame, line in sections:
        if frame is not None and len(frame):
            parts += ["", f"## {title}", ""] + [f"- {line(row)}" for _, row in frame.iterrows()]
    return "\n".join(parts) + "\n"


def summary_text(report: Report) -> str:
    """What `lrnoise report` prints: the main configuration's two tables, sweet spots, verdicts, the files."""
    main = report.main
    parts = []
    for stem in ("table2_baseline_accuracy", "table3_avg_normalized_accuracy"):
        title, blocks = main.tables[stem]
        parts.append(f"{title}")
        parts += [f"{dataset}\n{block.to_markdown()}" for dataset, block in blocks.items()]
    if len(main.sweet_spots):
        parts.append("Sweet spot (highest A_avr within the accuracy margin of the best lr):")
        parts += [f"  {r['dataset']} {r['model']}: lr {r['lr']:g}  a_0 {r[BASELINE]:.2%}  A_avr {r[A_AVR]:.2%}"
                  for _, r in main.sweet_spots.iterrows()]
    for config in report.configs:
        tag = f"[{config.info.name}]"
        parts += [f"{tag} {_cell_name(row)}: {claim_lines(row)[0]}" for _, row in config.claims.iterrows()]
        parts += [f"{tag} {_cell_name(row)}: {axis_claim_line(row)}" for _, row in config.axis_claims.iterrows()]
        parts += [f"{tag} {_cell_name(row)}: {eq2_line(row)}" for _, row in config.eq2.iterrows()]
        parts += [f"{tag} {_cell_name(row)}: {frontier_line(row, config.max_accuracy_drop)}"
                  for _, row in config.frontier.iterrows()]
    parts.append(f"{len(main.missing)} configurations missing" + (":" if main.missing else ""))
    parts += [f"  {line}" for line in main.missing[:20]]
    parts.append(f"files in {report.out}: " + ", ".join(report.files))
    return "\n".join(parts)
