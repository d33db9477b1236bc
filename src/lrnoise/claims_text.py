"""The claims in words: one sentence per verdict of lrnoise.stats (the lr trend, the sweet spot, the mechanism,
an axis effect, eq. 2, the frontier), and claims.md. Pure functions of the stats' rows; no MLflow, no files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrnoise import stats


def _numbers(row, prefix: str) -> str:
    """'+1.9 pp per lr step [+0.8, +3.0] (rho +0.84)', or 'rho +0.94, no interval' when the verdict has none."""
    rho, slope, low, high = (row[f"{prefix}_{k}"] for k in ("rho", "slope", "ci_low", "ci_high"))
    if not np.isfinite(rho):
        return "not computed"
    if not (np.isfinite(slope) and np.isfinite(low)):
        return f"rho {rho:+.2f}, no interval"
    return f"{slope * 100:+.1f} pp per lr step [{low * 100:+.1f}, {high * 100:+.1f}] (rho {rho:+.2f})"


def claim_lines(row) -> list[str]:
    """One cell's claims in words, one line each: the verdict, then its numbers (the trend per step of the lr grid
    with its 95 % t interval over seeds, Spearman's rho beside it)."""
    runs = (
        f"{row['n_runs']} runs, {row['seeds_per_lr']} seeds per lr{', seeds as blocks' if row['seed_blocks'] else ''}"
    )
    lines = [
        f"A_avr {row['avr_verdict']}: {_numbers(row, 'avr')}, {runs}",
        f"baseline accuracy {row['baseline_verdict']}: {_numbers(row, 'baseline')}",
    ]
    if np.isfinite(row["sweet_spot_lr"]):
        share = row["sweet_spot_share"]
        lines.append(
            f"sweet spot lr {row['sweet_spot_lr']:g}"
            + (f", chosen in {share:.0%} of resamples" if np.isfinite(share) else "")
        )
    for prefix, what in (("mechanism", "measured gradient noise C"), ("update_mechanism", "update noise")):
        if row[f"{prefix}_verdict"] != stats.NOT_MEASURED:
            slope = row[f"{prefix}_slope"]
            numbers = (
                f"{slope * 100:+.1f} pp [{row[f'{prefix}_ci_low'] * 100:+.1f}, {row[f'{prefix}_ci_high'] * 100:+.1f}]"
                if np.isfinite(slope)
                else "not computed"
            )
            lines.append(f"{what} vs A_avr at the same lr: {row[f'{prefix}_verdict']}, {numbers} of A_avr per doubling")
    if np.isfinite(row["paper_avr_rho"]):
        paper_says = "falls" if row["paper_avr_rho"] < 0 else "rises" if row["paper_avr_rho"] > 0 else "is flat"
        agrees = {"yes": "agrees", "no": "does not agree"}.get(row["agrees_with_paper"], "cannot be compared")
        lines.append(
            f"the paper's Table III row: A_avr {paper_says} with lr (rho {row['paper_avr_rho']:+.2f}); "
            f"this cell {agrees}"
        )
    return lines


def cell_name(row) -> str:
    """'digits · resnet20 · adam', with ' · B=64' and ' · train noise 5 %' where the row has them."""
    name = f"{row['dataset']} · {row['model']} · {row['optimizer']}"
    if "lr" in row and pd.notna(row.get("lr")):
        name += f" · lr {row['lr']:g}"
    if pd.notna(row.get("batch_size")):
        name += f" · B={int(row['batch_size'])}"
    if pd.notna(row.get("train_noise")) and row.get("train_noise"):
        name += f" · train noise {row['train_noise']:g}"
    return name


def _effect(row, prefix: str) -> str:
    """'-1.8 pp [-2.9, -0.7] per doubling of B (p = 0.004)', or 'not computed'."""
    effect, low, high = row[f"{prefix}_effect"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    if not np.isfinite(effect):
        return "not computed"
    return f"{effect * 100:+.1f} pp [{low * 100:+.1f}, {high * 100:+.1f}] {row['unit']} (p = {row[f'{prefix}_p']:.3f})"


def axis_claim_line(row) -> str:
    """The pooled effect of batch size or train noise in words: 'A_avr falls with batch_size: -1.8 pp [..] per
    doubling of B (p = ...); baseline accuracy ...; 18 runs over 3 lrs, 3 seeds per cell, seeds as blocks'."""
    design = (
        f"{row['n_runs']} runs over {row['n_lrs']} lr{'s' if row['n_lrs'] > 1 else ''}, {row['seeds_per_cell']} "
        f"seeds per cell{', seeds as blocks' if row['seed_blocks'] else ''}"
    )
    return (
        f"A_avr {row['avr_verdict']}: {_effect(row, 'avr')}; baseline accuracy {row['baseline_verdict']}: "
        f"{_effect(row, 'baseline')}; {design}"
    )


def _interval(low: float, high: float, fmt: str) -> str:
    return "unbounded" if not (np.isfinite(low) and np.isfinite(high)) else f"[{low:{fmt}}, {high:{fmt}}]"


def eq2_line(row) -> str:
    """The eq. 2 test of one value in words: which predictions the data exclude, the ratio b / a with its
    Fieller set, both slopes and the gates' p values."""
    if row["verdict"] == stats.TOO_FEW_SEEDS:
        return f"eq. 2 on {row['value']}: {stats.TOO_FEW_SEEDS} ({row['n_runs']} runs; needs >= 2 seeds per (lr, B))"
    tests = ", ".join(f"{name} p = {row[f'p_{name}']:.3f}" for name in stats.PREDICTIONS)
    return (
        f"eq. 2 on {row['value']}: {row['verdict']}: slope ratio b/a {row['ratio']:+.2f}, 95 % set "
        f"{row['ratio_set']} (lr^2/B: -0.5, lr/B: -1, lr alone: 0); {tests}; "
        f"per log lr {row['lr_slope']:+.3g} {_interval(row['lr_slope_ci_low'], row['lr_slope_ci_high'], '+.3g')}, "
        f"per log B {row['b_slope']:+.3g} {_interval(row['b_slope_ci_low'], row['b_slope_ci_high'], '+.3g')}; "
        f"joint effect p = {row['effect_p']:.3f}, lack of fit p = {row['lack_of_fit_p']:.3f}; {row['n_runs']} runs, "
        f"{row['seeds_per_cell']} seeds per (lr, B){', seeds as blocks' if row['seed_blocks'] else ''}"
    )


def frontier_line(row) -> str:
    """The lr-tuning vs noise-injection comparison in words: the target, each method's best there and how often
    it reaches it, the difference with its interval."""

    def best(avr, at):
        return "no configuration at the target" if not np.isfinite(avr) else f"A_avr {avr:.1%} ({at})"

    difference = (
        f"difference {row['difference'] * 100:+.1f} pp {_interval(row['ci_low'] * 100, row['ci_high'] * 100, '+.1f')}"
        f"{', seeds as blocks' if row['seed_blocks'] else ''}"
        if np.isfinite(row["difference"])
        else "no A_avr difference to state"
    )
    return (
        f"{row['verdict']}: at the target accuracy {row['target_accuracy']:.1%} ({row['target_from']}): "
        f"{stats.NOISE_TRAINING} "
        f"{best(row['noise_best_avr'], f'eta {row.noise_best_train_noise:g} at lr {row.noise_lr:g}')}, reaching the "
        f"target in {row['noise_reach_share']:.0%} of resamples; {stats.LR_TUNING} "
        f"{best(row['lr_best_avr'], f'lr {row.lr_best_lr:g}')}, in {row['lr_reach_share']:.0%}; {difference}"
    )


def claims_markdown(
    claims: pd.DataFrame,
    config_name: str,
    axis_claims: pd.DataFrame | None = None,
    eq2: pd.DataFrame | None = None,
    frontier: pd.DataFrame | None = None,
) -> str:
    """claims.md: per cell, each claim of the paper in words with its numbers; then the mechanism tests (claims
    over batch size and train noise, eq. 2, lr tuning vs noise-injection training) where the runs span them."""
    parts = [
        f"# The paper's claims, answered over seeds ({config_name})",
        "",
        "Verdicts are 95 % t intervals over seeds of the trend per step of the learning-rate grid, seeds as blocks "
        "(docs/statistics.md); Spearman's rho describes the ranking.",
    ]
    for _, row in claims.iterrows():
        parts += ["", f"## {cell_name(row)}", ""]
        parts += [f"- {line}" for line in claim_lines(row)]
    if not len(claims):
        parts += ["", "No cell has runs at three or more learning rates yet."]
    sections = (
        (
            "Over batch size and train noise (the other axes fixed)",
            axis_claims,
            lambda r: f"{cell_name(r)}: {axis_claim_line(r)}",
        ),
        (
            "Eq. 2: which gradient-noise scale, lr^2/B, lr/B or lr alone?",
            eq2,
            lambda r: f"{cell_name(r)}: {eq2_line(r)}",
        ),
        (
            "lr tuning vs noise-injection training",
            frontier,
            lambda r: f"{cell_name(r)}: {frontier_line(r)}",
        ),
    )
    for title, frame, line in sections:
        if frame is not None and len(frame):
            parts += ["", f"## {title}", ""] + [f"- {line(row)}" for _, row in frame.iterrows()]
    return "\n".join(parts) + "\n"
