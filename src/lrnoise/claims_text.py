"""The claims in words: one sentence per verdict of the report's tables (lrnoise.verdicts.TABLES), primary ones
first, and claims.md. Pure functions of the tables' rows; no MLflow, no files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrnoise import frontier, stats, verdicts


def _pp(value: float) -> str:
    return f"{value * 100:+.1f}"


def _g(value: float) -> str:
    return f"{value:+.3g}"


def _interval(low: float, high: float, fmt=_pp) -> str:
    return "unbounded" if not (np.isfinite(low) and np.isfinite(high)) else f"[{fmt(low)}, {fmt(high)}]"


def _standing(row, prefix: str) -> str:
    """'primary, Holm p = 0.004' / 'exploratory, p = 0.03, BH q = 0.09' / 'p = 0.03' before the family is known."""
    column = f"{prefix}_family" if prefix else "family"
    p = row.get(f"{prefix}_p" if prefix else "p", np.nan)
    adjusted = row.get(f"{prefix}_p_adjusted" if prefix else "p_adjusted", np.nan)
    family = row.get(column)
    if family == verdicts.PRIMARY:
        return f"primary, p = {p:.3f}, Holm p = {adjusted:.3f}"
    if family == verdicts.EXPLORATORY:
        return f"exploratory, p = {p:.3f}, BH q = {adjusted:.3f}"
    return f"p = {p:.3f}" if np.isfinite(p) else "no test"


def _could_detect(row, prefix: str, unit: str, seeds: str) -> str:
    """What a "no clear" verdict could have seen: '; cannot exclude +-1.2 pp per lr step (the effect detected
    with 80 % power at 3 seeds per lr; 4x the seeds halve it)'."""
    mde = row.get(f"{prefix}_mde" if prefix else "mde", np.nan)
    if not np.isfinite(mde):
        return ""
    return (
        f"; cannot exclude +-{mde * 100:.1f} pp {unit} (the effect detected with 80 % power at {seeds}; "
        "4x the seeds halve it)"
    )


def _is_no_clear(verdict: str) -> bool:
    return str(verdict).startswith("no clear")


def trend_line(row, prefix: str = "avr") -> str:
    """'A_avr rises with lr: +1.9 pp per lr step [+0.8, +3.0] (rho +0.84; primary, p = 0.001, Holm p = 0.002)'."""
    what = {"avr": "A_avr", "baseline": "baseline accuracy"}[prefix]
    slope, rho = row[f"{prefix}_slope"], row[f"{prefix}_rho"]
    if not np.isfinite(slope):
        return f"{what} {row[f'{prefix}_verdict']} (rho {rho:+.2f}, no interval)"
    line = (
        f"{what} {row[f'{prefix}_verdict']}: {_pp(slope)} pp per lr step "
        f"{_interval(row[f'{prefix}_ci_low'], row[f'{prefix}_ci_high'])} (rho {rho:+.2f}; {_standing(row, prefix)})"
    )
    if _is_no_clear(row[f"{prefix}_verdict"]):
        line += _could_detect(row, prefix, "per lr step", f"{row['seeds_per_lr']} seeds per lr")
    return line


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
    for prefix, what in (("mechanism", "measured gradient noise C"), ("update_mechanism", "update noise")):
        if row[f"{prefix}_verdict"] != stats.NOT_MEASURED:
            slope = row[f"{prefix}_slope"]
            numbers = (
                f"{_pp(slope)} pp {_interval(row[f'{prefix}_ci_low'], row[f'{prefix}_ci_high'])} of A_avr per "
                f"doubling ({_standing(row, prefix)})"
                if np.isfinite(slope)
                else "not computed"
            )
            lines.append(f"{what} vs A_avr at the same lr: {row[f'{prefix}_verdict']}, {numbers}")
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
    them."""
    name = f"{row['dataset']} · {row['model']}"
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
    """'falls with batch_size: -1.8 pp [-2.9, -0.7] per doubling of B (primary, p = ..., Holm p = ...)'."""
    effect = row[f"{prefix}_effect"]
    if not np.isfinite(effect):
        return f"{row[f'{prefix}_verdict']}"
    line = (
        f"{row[f'{prefix}_verdict']}: {_pp(effect)} pp {_interval(row[f'{prefix}_ci_low'], row[f'{prefix}_ci_high'])} "
        f"{row['unit']} ({_standing(row, prefix)})"
    )
    if _is_no_clear(row[f"{prefix}_verdict"]):
        line += _could_detect(row, prefix, row["unit"], f"{row.get('seeds_per_cell', '?')} seeds per cell")
    return line


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
    """'batch-size effect on A_avr, adam minus momentum: higher for momentum: -2.1 pp [..] per doubling of B'."""
    return f"batch-size effect on A_avr, {row['optimizer']} minus {row['versus']}: {_effect(row, 'avr')}"


def eq2_line(row) -> str:
    """An eq. 2 row in words. On A_avr: which predictions the data exclude, the ratio b / a with its Fieller
    set, both slopes and the gates. On a measured noise: how it scales with lr and B."""
    design = f"{row['n_runs']} runs, {row['seeds_per_cell']} seeds per (lr, B), each cell its own spread"
    if row["verdict"] == stats.TOO_FEW_SEEDS:
        return f"eq. 2 on {row['value']}: {stats.TOO_FEW_SEEDS} ({design}; needs >= 2 runs in every (lr, B))"
    if row["kind"] == stats.SCALES:
        return (
            f"{row['value'].removeprefix('log ')} {row['verdict']} (exponents of lr and B; "
            f"lr: {_standing(row, 'lr_slope')}; B: {_standing(row, 'b_slope')}); {design}"
        )
    tests = ", ".join(
        f"{name} p = {row[f'p_{name}']:.3f}"
        + (f" (Holm {row[f'{name}_p_adjusted']:.3f})" if np.isfinite(row.get(f"{name}_p_adjusted", np.nan)) else "")
        for name in stats.PREDICTIONS
    )
    standing = _standing(row, "effect") if "effect_family" in row else f"p = {row['effect_p']:.3f}"
    line = (
        f"eq. 2 on {row['value']}: {row['verdict']}: slope ratio b/a {row['ratio']:+.2f}, 95 % set "
        f"{row['ratio_set']} (lr^2/B: -0.5, lr/B: -1, lr alone: 0); {tests}; "
        f"per log lr {row['lr_slope']:+.3g} {_interval(row['lr_slope_ci_low'], row['lr_slope_ci_high'], _g)}, "
        f"per log B {row['b_slope']:+.3g} {_interval(row['b_slope_ci_low'], row['b_slope_ci_high'], _g)}; "
        f"joint effect ({standing}), lack of fit p = {row['lack_of_fit_p']:.3f}; {design}"
    )
    if row["verdict"] == stats.NO_EFFECT and np.isfinite(row["lr_slope_mde"]):
        line += f"; cannot exclude +-{row['lr_slope_mde'] * 100:.1f} pp per unit of log lr (80 % power)"
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
        if _is_no_clear(row["verdict"]):
            difference += f"; cannot exclude +-{row['mde'] * 100:.1f} pp (80 % power)"
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
    main = {"claims": "avr_family", "axis_claims": "avr_family", "interactions": "avr_family"}.get(table, "family")
    if table == "eq2":
        main = "effect_family"
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
