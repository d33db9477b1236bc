"""One noise evaluation's figure, noise_curve.png: its normalised accuracy against the noise level, 95 % CIs over
the draws, A_avr in the title. The noise layer logs numbers and tables and imports no matplotlib: the layers above
it (the `noise-eval` command, a study's evaluations) hand `write_noise_curve` to noise.evaluation.noise_eval as
its `draw`, which calls it on the run's artifact folder before the folder is logged into the run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from lrnoise.analysis.run_table import columns
from lrnoise.noise import noise_config
from lrnoise.report import figures
from lrnoise.report.rows import LevelPoint

if TYPE_CHECKING:  # the noise evaluation's result type only: drawing needs no Keras
    from lrnoise.noise.injection import NoiseResult

FIGURE_STEM = "noise_curve"  # the evaluation run's artifact: noise_curve.png


def noise_curve_figure(result: NoiseResult, config: noise_config.NoiseConfig, dataset: str) -> Figure:
    """The evaluation's curve (figures.noise_curve) from its per-level summary."""
    curve = result.summary.rename(columns={"normalized_accuracy_ci95": "ci95"})[columns(LevelPoint)]
    return figures.noise_curve(
        curve,
        f"{dataset}: normalised accuracy under {config.name} noise "
        f"(A_avr = {result.avg_normalized_accuracy:.3f}; bars: 95 % CI over draws)",
        level_label=figures.level_axis_label(config.level_name),
        log_x=config.level_name == "t",
        tick_text=lambda level: noise_config.level_label(config.level_name, level),
    )


def write_noise_curve(
    result: NoiseResult, config: noise_config.NoiseConfig, dataset: str, folder: str | Path
) -> list[Path]:
    """Writes noise_curve.png into `folder` (an evaluation run's artifacts; no PDF: the report's figures add
    those) and returns its path; noise_eval's `draw`."""
    return figures.save(noise_curve_figure(result, config, dataset), Path(folder) / FIGURE_STEM, vector=False)
