"""The paper's tables and figures, per noise configuration, built from the tracking server (never local files),
and written into one folder.

Two paged searches (results.fetch) read every finished training run and every finished noise evaluation of the
experiment; evaluations are joined to their training runs by configuration key, so a table only ever holds
evaluations of exactly one NoiseConfig (several evaluations of one model under it, differing only in precision,
are averaged). `build` returns every configuration's tables (report.tables), figures (report.report_figures) and
verdicts as data; `write` writes them, with claims.md and report.html, into one folder swapped in whole;
`build_and_write` is the `lrnoise report` command (report.console prints its summary). Several runs of one cell
(seeds) give mean, 95 % t-CI and n.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lrnoise import names
from lrnoise.analysis import verdicts
from lrnoise.report import aliases, figures, report_figures, report_html
from lrnoise.report.claims_text import claims_markdown
from lrnoise.report.results import (
    ConfigInfo,
    choose,
    configurations,
    fetch,
    join,
    learned_runs,
    semantics_note,
)
from lrnoise.report.tables import (
    cells,
    comparison_text,
    formatted_optimizers,
    missing_configurations,
    optimizer_table,
    paper_comparison,
    sweet_spots,
    table,
)
from lrnoise.settings import ReportSettings
from lrnoise.store import run_logging, session


# ---------------------------------------------------------------- building (data)
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
    max_accuracy_drop: float  # the accuracy margin of the sweet spots and the frontier (ReportSettings')

    @property
    def claims(self) -> pd.DataFrame:
        return self.verdicts["claims"]


@dataclass
class Report:
    """The whole report, as data (`build`), and where `write` put its files."""

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
    settings: ReportSettings,
) -> ConfigReport:
    """One configuration's report: its evaluations joined onto the runs, its tables, csv frames, figures, sweet
    spots, holes and verdicts."""
    joined = join(runs, evals, info)
    table_optimizer = settings.optimizer or "adam"
    label = f"{info.name}; {table_optimizer}; mean ±95 % CI over seeds (n)"
    tables = {
        "table2_baseline_accuracy": (
            f"Table II: baseline (clean) test accuracy ({label})",
            table(joined, names.BASELINE_ACCURACY, table_optimizer, learned_only=False),
        ),
        "table3_avg_normalized_accuracy": (
            f"Table III: average normalised accuracy A_avr ({label})",
            table(joined, names.AVG_NORMALIZED_ACCURACY, table_optimizer, learned_only=True),
        ),
    }
    frames = {
        "runs.csv": joined,
        "table2_baseline_accuracy.csv": cells(joined, names.BASELINE_ACCURACY),
        "table3_avg_normalized_accuracy.csv": cells(learned_runs(joined), names.AVG_NORMALIZED_ACCURACY),
    }
    optimizers = optimizer_table(joined)
    frames["table_optimizers.csv"] = optimizers
    if len(optimizers):
        tables["table_optimizers"] = (f"Optimizers, Figure 3's data ({info.name})", formatted_optimizers(optimizers))
    verdict_tables = verdicts.tables(joined, settings.max_accuracy_drop, settings.target_accuracy)
    frames.update({f"{name}.csv": frame for name, frame in verdict_tables.items()})  # for machines; claims.md: a person
    figs = report_figures.config_figures(joined, info, optimizers, verdict_tables["frontier"])
    spots = sweet_spots(joined, settings.max_accuracy_drop)
    frames["sweet_spot.csv"] = spots
    if info.is_paper:
        comparison = paper_comparison(joined)
        frames["paper_comparison.csv"] = comparison
        tables["paper_comparison"] = (
            "Ours vs the paper (matching dataset, model, optimizer, lr; additive-paper)",
            comparison_text(comparison),
        )
    return ConfigReport(
        info,
        joined,
        tables,
        frames,
        figs,
        spots,
        missing_configurations(joined),
        verdict_tables,
        settings.max_accuracy_drop,
    )


def build(settings: ReportSettings) -> Report:
    """The report of one configuration (name or key) or of every one found ('all'), as data; writes nothing."""
    settings.validate()
    runs, evals, exp_id = fetch(settings.experiment, settings.dataset, settings.model, settings.optimizer)
    chosen = choose(configurations(evals), settings.noise_config)
    configs = [build_config(runs, evals, info, settings) for info in chosen]
    family = verdicts.assess({config.info.name: config.verdicts for config in configs})
    return Report(
        Path("."),
        configs,
        report_figures.across_figures(configs),
        experiment_id=exp_id,
        semantics=semantics_note(runs, evals),
        experiment=settings.experiment,
        family=family,
    )


# ---------------------------------------------------------------- writing (files)
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
    (fresh / report_html.HTML_PAGE).write_text(_html(report, fresh))
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
    where = session.where_to_look(report.experiment_id) if report.experiment_id else ""
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


def build_and_write(settings: ReportSettings, log_run: bool = True, set_alias: bool = True) -> Report:
    """`lrnoise report`: build, write into `out` (default reports/<experiment>; figures as png, and as pdf with
    `pdf`), move the sweet-spot aliases (unless not `set_alias`), log everything as a `report` run (unless not
    `log_run`)."""
    report = build(settings)
    write(report, Path(settings.out or Path("reports") / settings.experiment), settings.pdf)
    if set_alias:
        aliases.set_sweet_spot_aliases(report)
    if log_run:
        run_logging.log_report(report.experiment_id, report.out)
    return report
