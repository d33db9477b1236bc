"""The report as one self-contained HTML page (report.html): per noise configuration the claims in words, the
tables, the figures (PNG embedded as data URIs, so the page needs no other file) and the grid's holes. Logged
with the report run, it is what the MLflow UI's artifact view shows first. Pure text in, text out: report.assembly
gathers the sections and writes the page."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

HTML_PAGE = "report.html"  # the page's file name, at the top of a report's folder

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th { background: #f3f3f3; }
img { max-width: 100%; margin: 0.5rem 0 1.5rem; }
.note { background: #fff4d6; padding: 0.5rem 1rem; border-left: 4px solid #e0a800; }
nav a { margin-right: 1rem; }
"""


@dataclass
class Section:
    """One noise configuration's part of the page."""

    name: str  # the configuration's name (additive-paper, pcm-1s-1y, ...)
    claims_markdown: str  # claims.md's text
    tables: dict = field(default_factory=dict)  # title -> DataFrame (or {dataset: DataFrame})
    figures: list = field(default_factory=list)  # PNG paths, in page order
    missing: list | None = field(default_factory=list)  # grid configurations without a finished run (None: n/a)


def page(title: str, sections: list[Section], note: str = "", where: str = "") -> str:
    """The whole page. `note`: a line shown above everything (e.g. runs of several code versions); `where`:
    where the runs are (the tracking UI's runs table)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if note:
        body.append(f'<p class="note">{html.escape(note)}</p>')
    if where:
        body.append(markdown(where))
    if len(sections) > 1:
        links = " ".join(f'<a href="#{_anchor(s.name)}">{html.escape(s.name)}</a>' for s in sections)
        body.append(f"<nav>Noise configurations: {links}</nav>")
    for section in sections:
        body.append(_section(section))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def table_html(frame) -> str:
    """A frame as an HTML table: a named index (Tables II-III's model) as the first column, no empty header row."""
    shown = frame.reset_index() if any(frame.index.names) else frame
    return shown.to_html(index=False, na_rep="—")


def _section(section: Section) -> str:
    parts = [f'<h2 id="{_anchor(section.name)}">{html.escape(section.name)}</h2>']
    if section.claims_markdown:
        parts.append(markdown(section.claims_markdown))
    for title, content in section.tables.items():
        parts.append(f"<h3>{html.escape(title)}</h3>")
        blocks = content if isinstance(content, dict) else {"": content}
        for dataset, frame in blocks.items():
            if dataset:
                parts.append(f"<h4>{html.escape(str(dataset))}</h4>")
            parts.append(table_html(frame) if len(frame) else "<p>(none)</p>")
    if section.figures:
        parts.append("<h3>Figures</h3>")
        parts += [image(path) for path in section.figures]
    if section.missing is None:
        return "\n".join(parts)
    parts.append(f"<h3>Holes in the grid ({len(section.missing)})</h3>")
    if section.missing:
        parts.append("<ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in section.missing) + "</ul>")
    else:
        parts.append("<p>none: every configuration of the grid has a finished run</p>")
    return "\n".join(parts)


def image(path: Path) -> str:
    """A PNG as an <img> with its bytes inline (a data URI) and its file name as alt text."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def markdown(text: str) -> str:
    """The little markdown claims.md uses: '#' headings, '- ' items, paragraphs, `code` (escaped first)."""
    out, items = [], []

    def flush():
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line.strip()))
        if line.startswith("- "):
            items.append(escaped[2:])
            continue
        flush()
        heading = re.match(r"(#+) (.*)", escaped)
        if heading:
            level = min(len(heading.group(1)) + 2, 6)  # the page's own h1 and h2 come first
            out.append(f"<h{level}>{heading.group(2)}</h{level}>")
        elif escaped:
            out.append(f"<p>{escaped}</p>")
    flush()
    return "\n".join(out)


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower())


def table_frames(tables: dict) -> dict:
    """report tables {stem: (title, content)} as {title: content}, content a frame or {dataset: frame}."""
    return {title: content for title, content in tables.values() if isinstance(content, (dict, pd.DataFrame))}
