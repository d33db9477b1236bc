"""The claims in words: one sentence per verdict of the report's tables (lrnoise.analysis.verdicts.TABLES), primary ones
first, and claims.md. Pure functions of the tables' rows; no MLflow, no files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrnoise.analysis import eq2, frontier, lr_claims, verdicts
from lrnoise.analysis.run_table import TOO_FEW_SEEDS
from lrnoise.config import describe_data


def _pp(value: float) -> str:
    return f"{value * 100:+.1f}"


def _g(value: float) -> str:
    return f"{value:+.3g}"


def _interval(low: float, high: float, fmt=_pp) -> str:
    return "unbounded" if not (np.isfinite(low) and np.isfinite(high)) else f"[{fmt(low)}, {fmt(high)}]"


def _standing(row, prefix: str) -> str:
    """'primary, Holm p = 0.004' / 'exploratory, p = 0.03, BH q = 0.09' / 'p = 0.03' before the family is known."""
    p = row.get(verdicts.column(prefix, "p"), np.nan)
    adjusted = row.get(verdicts.column(prefix, "p_adjusted"), np.nan)
    family = row.get(verdicts.column(prefix, "family"))
    if family == verdicts.PRIMARY:
        return f"primary, p {_p(p)}, Holm p {_p(adjusted)}"
    if family == verdicts.EXPLORATORY:
        return f"exploratory, p {_p(p)}, BH q {_p(adjusted)}"
    return f"p {_p(p)}" if np.isfinite(p) else "no test"


def _p(value: float) -> str:
    """'= 0.034', or '< 0.001' below it."""
    return "< 0.001" if value < 0.001 else f"= {value:.3f}"


def _could_detect(row, prefix: str, unit: str, design: str) -> str:
    """What a "no clear" verdict could have seen: '; cannot exclude +-1.2 pp per lr step (the effect detected
    with 80 % power at 3 seeds per lr; about 4x the seeds halve it)'; '' where the row names an effect."""
    mde = row.get(verdicts.column(prefix, "mde"), np.nan)
    if not (_is_no_clear(row[verdicts.column(prefix, "verdict")]) and np.isfinite(mde)):
        return ""
    return (
        f"; cannot exclude +-{mde * 100:.1f} pp {unit} (the effect detected with 80 % power at {design}; "
        "about 4x the seeds halve it)"
    )


def _is_no_clear(verdict: str) -> bool:
    return str(verdict).startswith("no clear")


def _numbers(row, prefix: str, estimate: str, unit: str, design: str, rho: str = "") -> str:
    """One verdict with its numbers: 'rises with lr: +1.9 pp per lr step [+0.8, +3.0] (rho +0.84; primary, p =
    0.001, Holm p = 0.002)', and for a "no clear" verdict what it could have detected; the bare verdict where no
    estimate was computed."""
    verdict, value = row[verdicts.column(prefix, "verdict")], row[verdicts.column(prefix, estimate)]
    if not np.isfinite(value):
        return f"{verdict}{f' ({rho}, no interval)' if rho else ''}"
    interval = _interval(row[verdicts.column(prefix, "ci_low")], row[verdicts.column(prefix, "ci_high")])
    standing = f"{rho}; {_standing(row, prefix)}" if rho else _standing(row, prefix)
    return f"{verdict}: {_pp(value)} pp {unit} {interval} ({standing}){_could_detect(row, prefix, unit, design)}"


def trend_line(row, prefix: str = "avr") -> str:
    """'A_avr rises with lr: +1.9 pp per lr step [+0.8, +3.0] (rho +0.84; primary, p = 0.001, Holm p = 0.002)'."""
    what = {"avr": "A_avr", "baseline": "baseline accuracy"}[prefix]
    rho = f"rho {row[prefix + '_rho']:+.2f}"
    seeds = f"{row['seeds_per_lr']} seeds per lr"
    return f"{what} {_numbers(row, prefix, 'slope', 'per lr step', seeds, rho)}"


def claim_lines(row) -> list[str]:
    """One cell's claims in words, one line each: the A_avr trend with its design, the baseline trend, the sweet
    spot, the measured noise against A_avr at the same lr, and the paper's row."""
    lines = [
        f"{trend_line(row, 'avr')}; {row['n_runs']} runs, {row['seeds_per_lr']} seeds per lr, each lr its own spread",
        trend_line(row, "baseline"),
    ]
    if np.isfinite(row["sweet_spot_lr"]):
        share = row["sweet_spot_share"]
        lines.append(
            f"sweet spot lr {row['sweet_spot_lr']:g} (descriptive, no test)"
            + (f", chosen in {share:.0%} of resamples" if np.isfinite(share) else "")
        )
    seeds = f"{row['seeds_per_lr']} seeds per lr"
    for prefix, what in (("mechanism", "measured gradient noise C"), ("update_mechanism", "update noise")):
        if row[f"{prefix}_verdict"] != lr_claims.NOT_MEASURED:
            numbers = _numbers(row, prefix, "slope", "of A_avr per doubling", seeds)
            lines.append(f"{what} vs A_avr at the same lr: {numbers}")
    if np.isfinite(row["paper_avr_rho"]):
        paper_says = "falls" if row["paper_avr_rho"] < 0 else "rises" if row["paper_avr_rho"] > 0 else "is flat"
        agrees = {"yes": "agrees", "no": "does not agree"}.get(row["agrees_with_paper"], "cannot be compared")
        lines.append(
            f"the paper's Table III row: A_avr {paper_says} with lr (rho {row['paper_avr_rho']:+.2f}); "
            f"this cell {agrees}"
        )
    return lines


def cell_name(row) -> str:
    """'digits · resnet20 · adam', with ' · B=64', ' · train noise 5 %' and ' · budget steps' where the row has
    them; a subset's data in words ('fashion_mnist (4,000 of 60,000 training images; ...) · resnet20')."""
    name = f"{describe_data(row['dataset'])} · {row['model']}"
    if pd.notna(row.get("optimizer")):
        name += f" · {row['optimizer']}"
    if "lr" in row and pd.notna(row.get("lr")):
        name += f" · lr {row['lr']:g}"
    if pd.notna(row.get("batch_size")):
        name += f" · B={int(row['batch_size'])}"
    if pd.notna(row.get("train_noise")) and row.get("train_noise"):
        name += f" · train noise {row['train_noise']:g}"
    if row.get("budget") == "steps":
        name += " · budget steps"
    return name


EXPOSURE = {  # what else a batch size changes under each budget
    "steps": "at equal updates a larger B also saw more examples: the effect mixes gradient noise with data exposure",
    "epochs": "at equal epochs a larger B took fewer updates: the effect mixes gradient noise with the update count",
}


def _effect(row, prefix: str) -> str:
    """'falls with batch_size: -1.8 pp per doubling of B [-2.9, -0.7] (primary, p = ..., Holm p = ...)'."""
    return _numbers(row, prefix, "effect", row["unit"], f"{row['seeds_per_cell']} seeds per cell")


def axis_claim_line(row) -> str:
    """The pooled effect of batch size or train noise in words, with the design and, for batch size, what else a
    batch size changes under the run's budget."""
    design = (
        f"{row['n_runs']} runs over {row['n_lrs']} lr{'s' if row['n_lrs'] > 1 else ''}, {row['seeds_per_cell']} "
        "seeds per cell, each cell its own spread"
    )
    confound = f"; {EXPOSURE[row['budget']]}" if row["axis"] == "batch_size" and row["budget"] in EXPOSURE else ""
    return f"A_avr {_effect(row, 'avr')}; baseline accuracy {_effect(row, 'baseline')}; {design}{confound}"


def interaction_line(row) -> str:
    """'batch-size effect on A_avr, adam minus momentum: higher for momentum: -2.1 pp per doubling of B [..]'."""
    return f"batch-size effect on A_avr, {row['optimizer']} minus {row['versus']}: {_effect(row, 'avr')}"


def eq2_line(row) -> str:
    """An eq. 2 row in words. On A_avr: which predictions the data exclude, the ratio b / a with its Fieller
    set, both slopes and the gates. On a measured noise: how it scales with lr and B."""
    design = f"{row['n_runs']} runs, {row['seeds_per_cell']} seeds per (lr, B), each cell its own spread"
    if row["verdict"] == TOO_FEW_SEEDS:
        return f"eq. 2 on {row['value']}: {TOO_FEW_SEEDS} ({design}; needs >= 2 runs in every (lr, B))"
    if row["kind"] == eq2.SCALES:
        return (
            f"{row['value'].removeprefix('log ')} {row['verdict']} (exponents of lr and B; "
            f"lr: {_standing(row, 'lr_slope')}; B: {_standing(row, 'b_slope')}); {design}"
        )
    tests = ", ".join(
        f"{name} p = {row[f'p_{name}']:.3f}"
        + (f" (Holm {row[f'{name}_p_adjusted']:.3f})" if np.isfinite(row.get(f"{name}_p_adjusted", np.nan)) else "")
        for name in eq2.PREDICTIONS
    )
    standing = _standing(row, "effect") if "effect_family" in row else f"p = {row['effect_p']:.3f}"
    line = (
        f"eq. 2 on {row['value']}: {row['verdict']}: slope ratio b/a {row['ratio']:+.2f}, 95 % set "
        f"{row['ratio_set']} (lr^2/B: -0.5, lr/B: -1, lr alone: 0); {tests}; "
        f"per log lr {row['lr_slope']:+.3g} {_interval(row['lr_slope_ci_low'], row['lr_slope_ci_high'], _g)}, "
        f"per log B {row['b_slope']:+.3g} {_interval(row['b_slope_ci_low'], row['b_slope_ci_high'], _g)}; "
        f"joint effect ({standing}), lack of fit p = {row['lack_of_fit_p']:.3f}; {design}"
    )
    if row["verdict"] == eq2.NO_EFFECT and np.isfinite(row["effect_mde"]):
        line += (
            f"; cannot exclude +-{row['effect_mde'] * 100:.1f} pp per unit of log lr (the slope detected with 80 % "
            f"power at {row['seeds_per_cell']} seeds per (lr, B))"
        )
    return line


def frontier_line(row) -> str:
    """The lr-tuning vs noise-injection comparison in words: the target and where it came from, each method's
    best there and how often it reaches it, best against best with its simultaneous interval."""

    def best(avr, at):
        return "no configuration at the target" if not np.isfinite(avr) else f"A_avr {avr:.1%} ({at})"

    if np.isfinite(row["difference"]):
        difference = (
            f"best against best {_pp(row['difference'])} pp {_interval(row['ci_low'], row['ci_high'])}, "
            f"simultaneous over {int(row['n_pairs'])} pairs (max-t {row['critical_t']:.2f}; {_standing(row, '')})"
        )
        difference += _could_detect(row, "", "between the bests", f"{row['n_runs']} runs")
    else:
        difference = "no A_avr difference to state"
    return (
        f"{row['verdict']}: at the target accuracy {row['target_accuracy']:.1%} ({row['target_from']}): "
        f"{frontier.NOISE_TRAINING} "
        f"{best(row['noise_best_avr'], f'eta {row.noise_best_train_noise:g} at lr {row.noise_lr:g}')}, reaching the "
        f"target in {row['noise_reach_share']:.0%} of resamples; {frontier.LR_TUNING} "
        f"{best(row['lr_best_avr'], f'lr {row.lr_best_lr:g}')}, in {row['lr_reach_share']:.0%}; {difference}"
    )


def _lines(tables: dict, table: str, primary: bool | None) -> list[str]:
    """The lines of one table whose main verdict is (primary) or is not (exploratory) in the primary family;
    primary None: every line."""
    frame = tables.get(table)
    if frame is None or not len(frame):
        return []
    main = {"eq2": "effect_family", "frontier": "family"}.get(table, "avr_family")  # the row's own verdict
    words = {
        "claims": lambda r: claim_lines(r)[0] if primary is not False else "; ".join(claim_lines(r)),
        "axis_claims": axis_claim_line,
        "interactions": interaction_line,
        "eq2": eq2_line,
        "frontier": frontier_line,
    }[table]
    out = []
    for _, row in frame.iterrows():
        is_primary = row.get(main) == verdicts.PRIMARY
        if primary is None or is_primary == primary:
            out.append(f"{cell_name(row)}: {words(row)}")
        elif table == "claims" and primary is False:  # a primary lr trend's other claims are exploratory
            out.append(f"{cell_name(row)}: " + "; ".join(claim_lines(row)[1:]))
    return out


def verdict_lines(tables: dict, primary: bool) -> list[str]:
    """Every primary (or every exploratory) verdict of one configuration's tables, one line each."""
    return [line for table in verdicts.TABLES for line in _lines(tables, table, primary)]


TITLES = {
    "claims": "Over the learning rate, per cell",
    "axis_claims": "Over batch size and train noise (the other axes fixed)",
    "interactions": "Does batch size act differently for two optimizers?",
    "eq2": "Eq. 2: which gradient-noise scale, lr^2/B, lr/B or lr alone? (and how the measured noise scales)",
    "frontier": "lr tuning vs noise-injection training",
}


def claims_markdown(tables: dict, config_name: str, family: verdicts.Family | None = None) -> str:
    """claims.md: the multiplicity sentence, the primary verdicts, then every table's verdicts in words."""
    parts = [f"# The paper's claims, answered over seeds ({config_name})", ""]
    if family is not None:
        parts += [family.sentence(), "", "## Primary verdicts", ""]
        primary = verdict_lines(tables, True)
        parts += [f"- {line}" for line in primary] or ["- none in this noise configuration"]
    parts += [
        "",
        "Intervals are 95 % Welch t intervals over seeds, each cell with its own spread (docs/statistics.md); a "
        '"no clear" verdict states the effect it could have missed; Spearman\'s rho describes a ranking.',
    ]
    if not len(tables.get("claims", [])):
        parts += ["", "No cell has runs at three or more learning rates yet."]
    for _, row in tables.get("claims", pd.DataFrame()).iterrows():
        parts += ["", f"## {cell_name(row)}", ""] + [f"- {line}" for line in claim_lines(row)]
    for table in verdicts.TABLES[1:]:
        lines = _lines(tables, table, None)
        if lines:
            parts += ["", f"## {TITLES[table]}", ""] + [f"- {line}" for line in lines]
    return "\n".join(parts) + "\n"
