"""What a reader would see wrong in a figure, from matplotlib's own layout: `layout_problems` draws the figure
(Agg when it has no canvas) and checks on the window extents that every drawn text lies inside the figure, that
no legend covers a plotted artist or another text, and that no two texts overlap. For any matplotlib figure,
the report's (report.figures, report.figures_mechanism) or not; never pyplot."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text


def _renderer(fig: Figure):
    """Draws the figure (running the constrained layout) and returns its renderer; Agg when it has no canvas."""
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _drawn_ticks(axis) -> list:
    """The ticks an axis draws: those inside its view interval (matplotlib keeps spare Tick objects)."""
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    ticks = axis.get_major_ticks(len(axis.get_majorticklocs())) + axis.get_minor_ticks(len(axis.get_minorticklocs()))
    return [t for t in ticks if lo - tol <= t.get_loc() <= hi + tol]


def _panel_name(ax) -> str:
    """An axes' title, or its host's for a twin axes (which shares x with it and has no title)."""
    titles = [a.get_title() for a in [ax, *ax.get_shared_x_axes().get_siblings(ax)] if a.get_title()]
    return titles[0] if titles else f"axes {ax.figure.axes.index(ax)}"


def _drawn_texts(artist, panel: str | None = None) -> list[tuple[Text, str | None]]:
    """(text, panel name) for every visible, non-empty Text under `artist`, skipping hidden parents and
    undrawn ticks; panel is None for figure-level texts (suptitle, figure legends)."""
    if not artist.get_visible():
        return []
    if isinstance(artist, Text):
        return [(artist, panel)] if artist.get_text().strip() else []
    if hasattr(artist, "get_major_ticks") and hasattr(artist, "get_view_interval"):  # an Axis
        children = [artist.label, artist.offsetText] + _drawn_ticks(artist)
    else:
        children = artist.get_children()
    if hasattr(artist, "get_shared_x_axes"):  # an Axes
        panel = _panel_name(artist)
    return [found for child in children for found in _drawn_texts(child, panel)]


def _describe(text: Text, panel: str | None) -> str:
    shown = text.get_text().replace("\n", " ")
    where = f" in panel {panel!r}" if panel else ""
    return f"text {shown[:50] + ('...' if len(shown) > 50 else '')!r}{where}"


def _inside(inner, outer, tol: float = 0.5) -> bool:
    return (
        inner.x0 >= outer.x0 - tol
        and inner.y0 >= outer.y0 - tol
        and inner.x1 <= outer.x1 + tol
        and inner.y1 <= outer.y1 + tol
    )


def _overlap(a, b, tol: float = 0.5) -> bool:
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def _points_in(points: np.ndarray, box) -> bool:
    points = points[np.all(np.isfinite(points), axis=1)] if len(points) else points
    return bool(len(points)) and bool(
        np.any(
            (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1) & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)
        )
    )


def _hits(artist, box, renderer) -> bool:
    """Whether a plotted artist (line, errorbar bars, scatter, bar) has anything drawn inside `box` (display px)."""
    if isinstance(artist, Line2D):
        path = artist.get_transform().transform_path(artist.get_path())
        if artist.get_linestyle() in ("None", "", " ", "none"):
            return _points_in(path.vertices, box)  # markers only (errorbar caps)
        return _points_in(path.vertices, box) or path.intersects_bbox(box, filled=False)
    if isinstance(artist, LineCollection):
        transform = artist.get_transform()
        return any(
            _points_in(transform.transform(seg), box)
            or transform.transform_path(path).intersects_bbox(box, filled=False)
            for seg, path in zip(artist.get_segments(), artist.get_paths())
            if len(seg)
        )
    if isinstance(artist, PathCollection):
        return _points_in(artist.get_offset_transform().transform(artist.get_offsets()), box)
    if isinstance(artist, Rectangle):
        return _overlap(artist.get_window_extent(renderer), box, tol=0.0)
    return False


def _plotted(ax) -> list:
    return [a for a in list(ax.lines) + list(ax.collections) + list(ax.patches) if a.get_visible()]


def _legends(fig: Figure) -> list[Legend]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [legend for legend in legends if legend.get_visible()]


def _outside_figure(texts, boxes, figure_box) -> list[str]:
    return [
        f"{_describe(*found)} extends outside the figure: text box x {box.x0:.0f}..{box.x1:.0f}, "
        f"y {box.y0:.0f}..{box.y1:.0f} px; figure {figure_box.width:.0f}x{figure_box.height:.0f} px"
        for found, box in zip(texts, boxes)
        if not _inside(box, figure_box)
    ]


def _legend_collisions(fig: Figure, texts, boxes, renderer) -> list[str]:
    """A legend over a plotted artist of any axes, or over a text that is not its own."""
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for legend in _legends(fig):
        legend_box = legend.get_window_extent(renderer)
        names = ", ".join(t.get_text().replace("\n", " ") for t in legend.get_texts())
        names = names[:60] + ("..." if len(names) > 60 else "")
        for ax in axes:
            hit = next((artist for artist in _plotted(ax) if _hits(artist, legend_box, renderer)), None)
            if hit is not None:
                problems.append(f"legend ({names}) covers a {type(hit).__name__} in panel {_panel_name(ax)!r}")
        own = {id(text) for text, _ in _drawn_texts(legend)}
        problems += [
            f"legend ({names}) covers {_describe(*found)}"
            for found, box in zip(texts, boxes)
            if id(found[0]) not in own and _overlap(box, legend_box)
        ]
    return problems


def _text_collisions(fig: Figure, texts, boxes) -> list[str]:
    """Two drawn texts (tick labels of one axis, a label and a neighbour's title, ...) on top of each other;
    legend texts are left to `_legend_collisions`."""
    in_legend = {id(text) for legend in _legends(fig) for text, _ in _drawn_texts(legend)}
    kept = [i for i, (text, _) in enumerate(texts) if id(text) not in in_legend]
    return [
        f"{_describe(*texts[a])} overlaps {_describe(*texts[b])}"
        for i, a in enumerate(kept)
        for b in kept[i + 1 :]
        if _overlap(boxes[a], boxes[b])
    ]


def layout_problems(fig: Figure) -> list[str]:
    """What a reader would see wrong, from matplotlib's own layout after a draw; [] if nothing.

    Checks, on the window extents (display px) after `fig.canvas.draw()`: every drawn text (titles, suptitle,
    axis and tick labels, legend) lies inside the figure; no legend covers a plotted artist (line vertices and
    segments, error bars and caps, scatter points, bars) of any axes or a text other than its own; no two texts
    overlap (e.g. crowded tick labels).
    """
    renderer = _renderer(fig)
    texts = _drawn_texts(fig)
    boxes = [text.get_window_extent(renderer) for text, _ in texts]
    return (
        _outside_figure(texts, boxes, fig.bbox)
        + _legend_collisions(fig, texts, boxes, renderer)
        + _text_collisions(fig, texts, boxes)
    )
