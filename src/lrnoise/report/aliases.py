"""The registry aliases a report moves: `noise-robust` (and its per-configuration and per-batch-size variants) onto
the model version of each sweet spot (tables.sweet_spots), so a deployment can load the most noise-robust model
by alias."""

from __future__ import annotations

from lrnoise.store import registry

SWEET_SPOT_ALIAS = "noise-robust"


def set_sweet_spot_aliases(report) -> list[str]:
    """Points the registry alias `noise-robust` (another configuration: noise-robust-<name>; with several batch
    sizes, each its own: noise-robust-b8, noise-robust-b32, ...) at each sweet spot's model version of `report`
    (an assembly.Report), so no two sweet spots move one alias; returns 'name/version' of each."""
    moved = []
    for config in report.configs:
        alias = SWEET_SPOT_ALIAS if config.info.is_paper else f"{SWEET_SPOT_ALIAS}-{config.info.name}"
        spots = config.sweet_spots
        for run_id, suffix in zip(spots.get("run_id", []), spots.get("alias_suffix", [])):
            version = registry.set_alias_for_run(run_id, f"{alias}{suffix}")
            if version:
                moved.append(version)
    return moved
