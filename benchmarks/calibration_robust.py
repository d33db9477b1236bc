"""Calibration off the verdicts' own model (benchmarks/calibration.py runs these): unequal spread, ties, grids of
any size, tied configurations in the frontier, the whole report's primary family, and residuals resampled from
real studies (benchmarks/residuals.csv). Each function returns shares over synthetic studies."""

from pathlib import Path

import numpy as np
import pandas as pd

from lrnoise import grid, names, paper
from lrnoise.analysis import axis_effects, eq2, frontier, lr_claims, verdicts
from lrnoise.noise.noise_config import NoiseConfig
from lrnoise.settings import ReportSettings

DROP = ReportSettings.max_accuracy_drop  # the report's default accuracy margin (1 point)

HERE = Path(__file__).resolve().parent
RESIDUALS = HERE / "residuals.csv"
MECHANISM = grid.PRESETS["mechanism"]["blocks"]
MECHANISM_LRS = MECHANISM[0]["lrs"]
TRAIN_NOISES = MECHANISM[1]["train_noises"]
FRONTIER_LRS = (*MECHANISM_LRS, paper.OPTIMIZER_STUDY["lr"])
TEST_STEP = 1 / 360  # digits' test split: one image is 0.28 points of accuracy (ties)
DROP_SHARE = 0.2  # cells that lose one run, as a model that did not learn would be dropped
PAPER, PCM = names.PAPER_NOISE_CONFIG, NoiseConfig("pcm").name  # the presets' two noise configurations


def study(cells: list[dict], mu, draw, seeds: int, rng, base: float = 0.95, step: float | None = TEST_STEP):
    """One run per (cell, seed): A_avr = mu_c + the deviations draw(cells, seeds, rng) gives (a (cells, seeds)
    matrix), capped at 100 %; the baseline accuracy around `base` from a second draw at a fifth of the size,
    rounded to `step` (a test set's accuracy step: ties; None: not rounded)."""
    own, base_own = draw(len(cells), seeds, rng), draw(len(cells), seeds, rng) / 5
    baseline = base + base_own if step is None else np.round((base + base_own) / step) * step
    rows = [
        {
            "dataset": "digits",
            "model": "resnet20",
            "optimizer": "adam",
            "batch_size": 32,
            "train_noise": 0.0,
            **cell,
            "seed": seed,
            names.BASELINE_ACCURACY: baseline[k, seed],
            names.AVG_NORMALIZED_ACCURACY: min(1.0, m + own[k, seed]),
        }
        for k, (cell, m) in enumerate(zip(cells, mu))
        for seed in range(seeds)
    ]
    return pd.DataFrame(rows)


def normal_draw(spreads, shared: float = 0.015):
    """Deviations with cell k's own sd spreads[k] (the last one for every further cell) and a seed offset of sd
    `shared` that every cell of the study shares."""

    def draw(cells, seeds, rng):
        own = np.asarray(spreads, dtype=float)[np.minimum(np.arange(cells), len(spreads) - 1)]
        return rng.normal(0, shared, seeds)[None, :] + rng.normal(size=(cells, seeds)) * own[:, None]

    return draw


def rate(hits) -> float:
    return float(np.mean(list(hits)))


def trend_named(runs: pd.DataFrame) -> bool:
    """Whether the lr trend of A_avr names an effect."""
    return lr_claims.trend(runs, names.AVG_NORMALIZED_ACCURACY)["verdict"] != lr_claims.NO_TREND


def eq2_named(runs: pd.DataFrame) -> bool:
    """Whether eq. 2's gate names an effect of lr and B on A_avr."""
    return eq2.eq2_test(runs)["verdict"].iloc[0] != eq2.NO_EFFECT


# ---------------------------------------------------------------- on the model, off its assumptions
def trend_unequal_spread(studies: int, seeds: int, rng) -> float:
    """A false lr trend when the seed spread rises 3x across the six lrs (1.25 to 3.75 points), no effect."""
    cells = [{"lr": lr} for lr in paper.LRS]
    draw = normal_draw(np.linspace(0.0125, 0.0375, len(cells)))
    return rate(trend_named(study(cells, np.full(len(cells), 0.7), draw, seeds, rng)) for _ in range(studies))


def eq2_grid(lrs: int, batch_sizes: int) -> list[dict]:
    return [
        {"lr": lr, "batch_size": b} for lr in 0.0005 * 2.0 ** np.arange(lrs) for b in 8 * 2.0 ** np.arange(batch_sizes)
    ]


def lack_of_fit(studies: int, lrs: int, batch_sizes: int, rng, wide_cell: bool = False) -> dict:
    """On an lrs x batch_sizes grid whose cell means lie on a plane (lr^2/B, 3 points per unit of log lr): the share
    whose lack-of-fit test rejects (a true plane read as not linear) and whose truth (lr^2/B) is excluded. With
    `wide_cell`, one cell's spread is 3x the others'."""
    cells = eq2_grid(lrs, batch_sizes)
    mu = np.array([0.7 - 0.03 * (np.log(c["lr"]) - 0.5 * np.log(c["batch_size"])) for c in cells])
    spreads = np.full(len(cells), 0.02)
    if wide_cell:
        spreads[len(cells) // 2] = 0.06
    curved, excluded = [], []
    for _ in range(studies):
        row = eq2.eq2_test(study(cells, mu, normal_draw(spreads), 3, rng)).iloc[0]
        curved.append(row["lack_of_fit_p"] < 0.05)
        excluded.append("lr^2/B" in str(row["excluded"]).split(", "))
    return {"curved": rate(curved), "truth_excluded": rate(excluded)}


def frontier_cells(lr_best: bool) -> tuple[list[dict], np.ndarray]:
    """The mechanism design's frontier block with the two bests equal (0.70). lr_best: every clean lr tied at
    the best, one train noise (0.1) equal to them, the others 4 points lower; else every train noise tied at the
    best, the eta 0 configuration equal to them, the other lrs 4 points lower."""
    cells = [{"lr": lr, "train_noise": 0.0} for lr in FRONTIER_LRS]
    cells += [{"lr": paper.OPTIMIZER_STUDY["lr"], "train_noise": eta} for eta in TRAIN_NOISES if eta > 0]
    best = paper.OPTIMIZER_STUDY["lr"]
    mu = [
        0.70
        if (lr_best and (c["train_noise"] == 0 or c["train_noise"] == max(TRAIN_NOISES)))
        or (not lr_best and (c["train_noise"] > 0 or c["lr"] == best))
        else 0.66
        for c in cells
    ]
    return cells, np.array(mu)


def frontier_tied(studies: int, lr_best: bool, rng) -> float:
    """A winner named (before the report's Holm step) when the two bests are equal."""
    cells, mu = frontier_cells(lr_best)
    draw = normal_draw([0.02])
    named = [
        frontier.frontier(study(cells, mu, draw, 3, rng), DROP, seed=i)["verdict"].iloc[0].endswith("dominates")
        for i in range(studies)
    ]
    return rate(named)


# ---------------------------------------------------------------- the whole report's primary family
DEMO_CELLS = [{"lr": lr} for lr in paper.LRS]
MECHANISM_CELLS = [
    {"optimizer": o, "lr": lr, "batch_size": b, "budget": "steps"}
    for o in MECHANISM[0]["optimizers"]
    for lr in MECHANISM_LRS
    for b in MECHANISM[0]["batch_sizes"]
] + [{"lr": paper.OPTIMIZER_STUDY["lr"], "train_noise": eta, "budget": "steps"} for eta in TRAIN_NOISES]


def lr_report(rng, draw, pcm_draw, others: list[dict] = ()) -> dict:
    """A preset's runs under its two noise configurations, no effect anywhere: the six lrs x 3 seeds with Adam (and
    one run of each of `others`), additive A_avr ~ 70 % (deviations from `draw`), PCM ~ 97 % (from `pcm_draw`,
    capped at 100 %)."""
    parts = [(DEMO_CELLS, 3)] + ([(others, 1)] if others else [])
    runs, pcm = (
        pd.concat([study(cells, np.full(len(cells), mu), d, seeds, rng) for cells, seeds in parts], ignore_index=True)
        for mu, d in ((0.7, draw), (0.97, pcm_draw))
    )
    return {PAPER: runs, PCM: pcm.assign(**{names.BASELINE_ACCURACY: runs[names.BASELINE_ACCURACY]})}


def demo_report(rng, draw, pcm_draw) -> dict:
    """The demo's runs: the six lrs x 3 seeds with Adam and one run of each other optimizer (lr_report)."""
    others = [{"optimizer": o, "lr": paper.OPTIMIZER_STUDY["lr"]} for o in paper.OPTIMIZERS if o != "adam"]
    return lr_report(rng, draw, pcm_draw, others)


def fashion_report(rng, draw, pcm_draw) -> dict:
    """The fashion preset's runs: ResNet20, Adam, the six lrs x 3 seeds (lr_report)."""
    return lr_report(rng, draw, pcm_draw)


def mechanism_report(rng, draw, _) -> dict:
    """The mechanism preset's runs (one noise configuration), no effect anywhere."""
    return {PAPER: study(MECHANISM_CELLS, np.full(len(MECHANISM_CELLS), 0.7), draw, 3, rng)}


def family_wise(studies: int, make, rng, draws) -> tuple[float, float]:
    """(share of pure-noise reports with at least one primary verdict naming an effect, mean number of
    exploratory verdicts naming one) of the whole report built from make(rng, *draws)."""
    any_primary, exploratory = [], []
    for _ in range(studies):
        per_config = {name: verdicts.tables(runs, 0.01, None) for name, runs in make(rng, *draws).items()}
        family = verdicts.assess(per_config)
        any_primary.append(family.primary_named > 0)
        exploratory.append(family.exploratory_named)
    return rate(any_primary), float(np.mean(exploratory))


# ---------------------------------------------------------------- residuals of real studies
DIGITS_STUDIES = ("seeds", "mechanism")  # the digits stores: the residuals of the designs the demo runs


def residual_pool(value: str, noise_config: str | None = None, studies=DIGITS_STUDIES) -> dict:
    """(study, noise configuration) -> its cells' residuals (a run's value less its cell's mean, scaled by
    sqrt(n / (n - 1)) so that their mean square is the cell's sample variance), from benchmarks/residuals.csv,
    of the named studies."""
    frame = pd.read_csv(RESIDUALS)
    frame = frame[(frame["value"] == value) & frame["study"].isin(studies)]
    if noise_config:
        frame = frame[frame["noise_config"] == noise_config]
    pool: dict = {}
    for (study_name, config, _), cell in frame.groupby(["study", "noise_config", "cell"]):
        n = len(cell)
        if n >= 3:
            pool.setdefault((study_name, config), []).append(
                cell["residual"].to_numpy(dtype=float) * np.sqrt(n / (n - 1))
            )
    return pool


def residual_draw(pool: dict):
    """The residual bootstrap: each synthetic study takes one real study of the pool, and every run's deviation is
    drawn with replacement from all that study's scaled residuals (its seed-to-seed errors' shape, tails and
    ties, at its own spread). Not a real cell's own residuals reshuffled: they sum to zero, so every synthetic
    cell would get its true mean exactly; nor drawn from one real cell of 3 runs, which makes 1 cell in 9 runs
    all alike."""
    studies = [np.concatenate(cells) for cells in pool.values()]

    def draw(cells, seeds, rng):
        return rng.choice(studies[rng.integers(len(studies))], size=(cells, seeds))

    return draw


def cell_spread_draw(pool: dict):
    """The spread of the real cells taken as true: each synthetic cell gets a random real cell's sample sd (from
    3-5 runs, so far more unequal than the true spreads) times deviations drawn from all the pool's residuals,
    each divided by its cell's sample sd. A stress on the Welch contrasts' small-sample df, beside the bootstrap."""
    cells_of = [cell for cells in pool.values() for cell in cells]
    spreads = np.array([np.sqrt(np.mean(cell**2)) for cell in cells_of])
    shape = np.concatenate([cell / s for cell, s in zip(cells_of, spreads) if s > 0])

    def draw(cells, seeds, rng):
        return spreads[rng.integers(len(spreads), size=cells)][:, None] * rng.choice(shape, size=(cells, seeds))

    return draw


def drop_some(runs: pd.DataFrame, rng) -> pd.DataFrame:
    """One run dropped from a DROP_SHARE of the cells that have three or more (unbalanced cells)."""
    keys = [c for c in ("optimizer", "lr", "batch_size", "train_noise") if c in runs]
    dropped = []
    for _, cell in runs.groupby(keys):
        if len(cell) >= 3 and rng.random() < DROP_SHARE:
            dropped.append(cell.index[rng.integers(len(cell))])
    return runs.drop(index=dropped)


def resampled(studies: int, verdict, cells, seeds, mu, draw, rng) -> float:
    """Share of studies on resampled residuals (some cells unbalanced) whose verdict(runs) names an effect."""
    return rate(verdict(drop_some(study(cells, mu, draw, seeds, rng), rng)) for _ in range(studies))


def trend_resampled(studies: int, seeds: int, step: float, draw, rng) -> tuple[float, float]:
    """(share naming an lr trend of A_avr, share whose interval holds the true slope) on the six lrs x `seeds`
    with A_avr rising `step` per lr step from 70 % and resampled residuals (some cells unbalanced)."""
    named, covered = [], []
    for _ in range(studies):
        runs = drop_some(study(DEMO_CELLS, 0.7 + step * np.arange(6), draw, seeds, rng), rng)
        found = lr_claims.trend(runs, names.AVG_NORMALIZED_ACCURACY)
        named.append(found["verdict"] != lr_claims.NO_TREND)
        covered.append(found["ci_low"] <= step <= found["ci_high"])
    return rate(named), rate(covered)


def residual_verdicts() -> dict:
    """name -> (cells, seeds, verdict(runs) -> bool naming an effect) for every printed verdict with a test."""
    mech = [c for c in MECHANISM_CELLS if "optimizer" in c]
    adam = [c for c in mech if c["optimizer"] == "adam"]
    noise_block = [c for c in MECHANISM_CELLS if "train_noise" in c]
    frontier_block, _ = frontier_cells(True)
    return {
        "trend": (DEMO_CELLS, 3, trend_named),
        "trend_5_seeds": (DEMO_CELLS, 5, trend_named),
        "batch_size": (
            adam,
            3,
            lambda r: axis_effects.axis_claims(r, "batch_size")["avr_verdict"].iloc[0] != axis_effects.NO_AXIS_EFFECT,
        ),
        "train_noise": (
            noise_block,
            3,
            lambda r: axis_effects.axis_claims(r, "train_noise")["avr_verdict"].iloc[0] != axis_effects.NO_AXIS_EFFECT,
        ),
        "interaction": (
            mech,
            3,
            lambda r: axis_effects.batch_size_interactions(r)["avr_verdict"].iloc[0] != axis_effects.NO_AXIS_EFFECT,
        ),
        "eq2": (adam, 3, eq2_named),
        "eq2_5_seeds": (adam, 5, eq2_named),
        "frontier": (
            frontier_block,
            3,
            lambda r: frontier.frontier(r, DROP)["verdict"].iloc[0].endswith("dominates"),
        ),
    }
