"""What the fast paths (src/lrnoise/fastpath.py) buy on the main job: `lrnoise study --preset demo` (the job
`mlflow run .` runs: 23 configurations, two workers, the report) with the gate open and closed
(LRNOISE_FAST_PATHS=0), each in a fresh sqlite store in its own temporary folder, alternated open, closed,
closed, open so that a drift of the machine's speed hits both alike. The runs import a copy of src/ taken when
the benchmark starts, so editing the tree meanwhile changes nothing measured. About 15 minutes on 2 cores.

Figures: fastpath_demo_seconds_open / _closed (the mean wall seconds of the two runs of each) and
fastpath_closed_vs_open = closed / open (target >= 1.05: a path into Keras's internals must buy at least 5 %).
`python fastpath.py`; LRNOISE_BENCH_QUICK=1: one configuration, one epoch, one draw per level.
"""

import statistics

import _common

QUICK_GRID = ["--optimizers", "adam", "--lrs", "0.001", "--seeds", "0", "--epochs", "1", "--trials", "1"]
ORDER = ("open", "closed", "closed", "open")


def main():
    demo = ["--preset", "demo", *(QUICK_GRID if _common.quick() else [])]
    seconds = _common.alternated_studies(
        ORDER,
        {"open": demo, "closed": demo},
        env={"open": {"LRNOISE_FAST_PATHS": "1"}, "closed": {"LRNOISE_FAST_PATHS": "0"}},
        label="demo, fast paths ",
    )
    opened, closed = statistics.mean(seconds["open"]), statistics.mean(seconds["closed"])
    return _common.record(
        {
            "fastpath_demo_seconds_open": round(opened, 1),
            "fastpath_demo_seconds_closed": round(closed, 1),
            "fastpath_closed_vs_open": round(closed / opened, 3),
        }
    )


if __name__ == "__main__":
    main()
