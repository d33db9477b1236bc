"""What `lrnoise report` (and a study's end) prints: the main configuration's Tables II and III, the sweet spots,
the verdicts, the holes, and one line naming the folder, its file count and the files to open first."""

from __future__ import annotations

from lrnoise import names
from lrnoise.report.assembly import Report
from lrnoise.report.claims_text import verdict_lines
from lrnoise.report.report_html import HTML_PAGE


def summary_text(report: Report) -> str:
    """What `lrnoise report` prints: the main configuration's two tables, sweet spots, verdicts, the files."""
    main = report.main
    parts = [report.semantics] if report.semantics else []
    for stem in ("table2_baseline_accuracy", "table3_avg_normalized_accuracy"):
        title, blocks = main.tables[stem]
        parts.append(f"{title}")
        parts += [f"{dataset}\n{block.to_markdown()}" for dataset, block in blocks.items()]
    if len(main.sweet_spots):
        parts.append("Sweet spot (highest A_avr within the accuracy margin of the best lr):")
        parts += [
            f"  {r['dataset']} {r['model']}: lr {r['lr']:g}  a_0 {r[names.BASELINE_ACCURACY]:.2%}  "
            f"A_avr {r[names.AVG_NORMALIZED_ACCURACY]:.2%}"
            for _, r in main.sweet_spots.iterrows()
        ]
    if report.family is not None:
        parts.append(report.family.sentence())
    for primary in (True, False):
        parts.append("Primary verdicts:" if primary else "Exploratory verdicts:")
        for config in report.configs:
            parts += [f"[{config.info.name}] {line}" for line in verdict_lines(config.verdicts, primary)]
    parts.append(f"{len(main.missing)} configurations missing" + (":" if main.missing else ""))
    parts += [f"  {line}" for line in main.missing[:20]]
    parts.append(files_line(report))
    return "\n".join(parts)


FIRST_FILES = ("claims.md", "table3_avg_normalized_accuracy.md", "fig4_tradeoff_")  # what a person opens first


def files_line(report: Report) -> str:
    """'62 files in reports/lrnoise; open first: report.html, additive-paper/claims.md, ...': the folder, the
    count, the one-page report, and the claims, Table III and Figure 4 of the main configuration (not the list of
    every file)."""
    folder = f"{report.main.info.name}/" if len(report.configs) > 1 else ""  # several: one sub-folder each
    first = [HTML_PAGE if HTML_PAGE in report.files else None] + [
        next((f for f in report.files if f.startswith(f"{folder}{stem}") and f.endswith((".md", ".png"))), None)
        for stem in FIRST_FILES
    ]
    shown = ", ".join(f for f in first if f)
    return f"{len(report.files)} files in {report.out}" + (f"; open first: {shown}" if shown else "")
