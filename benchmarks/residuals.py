"""Writes benchmarks/residuals.csv, the seed-to-seed residuals of finished studies that the calibration resamples.

`python benchmarks/residuals.py seeds=sqlite:///path/to/seeds/mlflow.db mechanism=sqlite:///path/mlflow.db`: for
each named store (experiment `lrnoise`), every noise configuration's learned runs, and for A_avr and the baseline
accuracy each run's value less its cell's mean (a cell: one configuration but for the seed). Columns: study,
noise_config, value, cell, seed, residual. The rows of a study named here replace its earlier rows; the other
studies' rows stay (`fashion=...` alone adds the fashion study's)."""

import os
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from lrnoise import names  # noqa: E402
from lrnoise.analysis import lr_claims, run_table  # noqa: E402
from lrnoise.report import assembly, results  # noqa: E402
from lrnoise.settings import ReportSettings  # noqa: E402


def residuals(name: str, uri: str) -> pd.DataFrame:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    built = assembly.build(ReportSettings(noise_config="all"))
    frames = []
    for k, config in enumerate(built.configs):
        runs = run_table.evaluated_runs(results.learned_runs(config.runs))
        keys = [*lr_claims.CLAIM_CELL, "lr"]
        # the baseline belongs to the trained models: taken once, from the first noise configuration
        values = (names.AVG_NORMALIZED_ACCURACY, names.BASELINE_ACCURACY)
        for value in values if k == 0 else values[:1]:
            cell = runs.groupby(keys, dropna=False)[value]
            frames.append(
                pd.DataFrame(
                    {
                        "study": name,
                        "noise_config": config.info.name,
                        "value": value,
                        "cell": cell.ngroup(),
                        "seed": runs["seed"],
                        "residual": runs[value] - cell.transform("mean"),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    stores = dict(arg.split("=", 1) for arg in sys.argv[1:])
    path = HERE / "residuals.csv"
    kept = pd.read_csv(path) if path.exists() else pd.DataFrame()
    kept = kept[~kept["study"].isin(list(stores))] if len(kept) else kept
    frame = pd.concat([kept, *(residuals(name, uri).round(6) for name, uri in stores.items())], ignore_index=True)
    frame.to_csv(path, index=False)
    print(frame.groupby(["study", "noise_config", "value"])["residual"].agg(["count", "std"]))


if __name__ == "__main__":
    main()
