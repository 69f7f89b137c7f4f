"""Plot builders: each returns a Bokeh model (never HTML). Pages embed them with
``bokeh.embed.json_item``; notebooks can ``show()`` them.

Point data is not baked into the map: the page fetches ``/api/points`` (column arrays)
and fills the ``points`` source, so the HTML stays small at 100k points. CustomJS code is
a named constant that calls into ``static/*.js``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import bokeh
from bokeh.models import (
    BasicTicker,
    BoxSelectTool,
    ColorBar,
    ColumnDataSource,
    CustomJS,
    HoverTool,
    LassoSelectTool,
    LinearColorMapper,
    Range1d,
    Scatter,
    TapTool,
)
from bokeh.palettes import Blues256, Category10, Category20
from bokeh.plotting import figure

from hl_debug import mapdata
from hl_debug.domain import SPLITS

# Selection on the map -> the inspector (static/map.js defines window.hlDebug).
MAP_SELECTION_JS = "window.hlDebug && window.hlDebug.onSelect(source.selected.indices);"
# Hover on the map -> the page's hover card (static/map/hover.js), with the hit indices.
MAP_HOVER_JS = "window.hlDebug && window.hlDebug.onHover(cb_data.index.indices, cb_data.geometry);"
# Tap on a confusion-matrix cell -> list its rows (static/report.js).
CONFUSION_TAP_JS = ("const i = source.selected.indices[0];"
                    "if (i !== undefined && window.hlReport) window.hlReport.onCell(source.data.given[i], source.data.predicted[i]);")

# The map's Bokeh source (hit testing and selection): each column filled by static/map.js
# from a payload column (hl_debug.mapdata.COLUMNS), categorical and integer ones as text with
# what stands for a missing value (None: copied as numbers, into typed arrays). Positions and
# ids only: the hover card and the inspector read the rest from the decoded payload, and
# every text column here would cost BokehJS a scan of its 1M strings on each source change.
SOURCE_COLUMNS: dict[str, tuple[str, str | None]] = {"x": ("x", None), "y": ("y", None), "id": ("id", None)}
MAP_COLUMNS = tuple(SOURCE_COLUMNS)
MARKER_SIZE = 7  # CSS pixels; static/raster.js draws the markers at this size


@dataclass(frozen=True)
class ColorBy:
    """One "Colour by" choice of the map: a payload column (or ``annotated``), its title, how
    static/map/colours.js colours it (``intent``, ``cluster``, ``ramp``, ``split``,
    ``annotated``), and whether it only makes sense once there are predictions."""

    value: str
    title: str
    kind: str
    needs_predictions: bool = False


COLOR_BY: tuple[ColorBy, ...] = (
    ColorBy("label", "annotated intent", "intent"),
    ColorBy("predicted_label", "predicted intent", "intent", needs_predictions=True),
    ColorBy("cluster_id", "cluster", "cluster"),
    ColorBy("issue_score", "label-issue score", "ramp"),
    ColorBy("oos_score", "out-of-scope score", "ramp"),
    ColorBy("entropy", "entropy", "ramp", needs_predictions=True),
    ColorBy("model_change", "changed between the last two models", "change", needs_predictions=True),
    ColorBy("usage", "split", "split"),
    ColorBy("annotated", "annotated / unannotated", "annotated"),
)


def map_config(*, labels: Sequence[str], clusters: Sequence[dict], has_predictions: bool) -> dict:
    """What the map page's JS is told (the ``map-config`` JSON): the intents in palette order,
    the palette, the clusters, the payload's columns and format, the Bokeh source's columns,
    the colour-by choices, the splits, and the installed bokeh's version (the private BokehJS
    hooks in static/map/bokeh.js check it)."""
    return {
        "labels": list(labels), "palette": list(Category20[20]),
        "clusters": [{"id": c["cluster_id"], "keywords": c.get("keywords")} for c in clusters],
        "format": mapdata.FORMAT, "columns": mapdata.wire_types(),
        "source": {name: {"from": col, "missing": missing} for name, (col, missing) in SOURCE_COLUMNS.items()},
        "color_by": [{"value": c.value, "title": c.title, "kind": c.kind}
                     for c in COLOR_BY if has_predictions or not c.needs_predictions],
        "splits": list(SPLITS), "split_colors": dict(zip(SPLITS, Category10[10], strict=False)),
        "bokeh": bokeh.__version__, "marker_size": MARKER_SIZE,
    }


@lru_cache(maxsize=1)
def _map_item_json(height: int) -> str:
    from bokeh.embed import json_item

    return json.dumps(json_item(map_figure(height=height)))


def map_item(*, height: int = 640) -> dict:
    """``json_item`` of :func:`map_figure`, built once per process (the figure holds no data:
    the page fills it from ``/api/points``); a fresh copy each call, so a caller may change it."""
    return json.loads(_map_item_json(height))


def map_figure(*, height: int = 640) -> figure:
    """The utterance map: an empty ``points`` source the page fills from ``/api/points``.

    The points are painted by ``static/raster.js`` into one RGBA image (the ``raster``
    image renderer, redrawn by ``static/map.js`` on every view, colour or selection change), not
    by Bokeh marker by marker: without a GPU, Bokeh's WebGL or canvas markers cost seconds per
    repaint at 100k points (benchmarks/RESULTS.md, "Web map at 100k"). The ``scatter``
    renderer stays for hit testing and hover — lasso, box and tap select on it, the hover
    tool's callback has ``static/map/hover.js`` show the nearest row's card, its text
    looked up once fetched and set as text, never parsed as HTML —
    but ``static/map/bokeh.js`` switches its painting off (or, when the loaded BokehJS is not
    the version its hooks were written for, has Bokeh paint the markers instead). Both ranges follow the scatter only, so the
    image (which always covers the current view) never widens them. WebGL output backend:
    the image is one texture.
    """
    source = ColumnDataSource({c: [] for c in MAP_COLUMNS}, name="points")
    raster = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []}, name="raster")
    # The lasso selects on release, not on every mouse move: each selection change redraws
    # the points.
    lasso = LassoSelectTool(continuous=False)
    p = figure(height=height, sizing_mode="stretch_width", output_backend="canvas",
               tools=["pan", "wheel_zoom", lasso, "box_select", "tap", "reset", "save"],
               active_drag=lasso, active_scroll="wheel_zoom", name="map",
               toolbar_location="above", match_aspect=False)
    p.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=raster, name="points_image")
    scatter = p.scatter("x", "y", source=source, size=MARKER_SIZE, fill_alpha=0, line_alpha=0, name="scatter")
    # Explicit (invisible) selection glyphs, so that static/map/bokeh.js can make Bokeh draw the markers
    # itself when the raster's private BokehJS hooks do not fit the loaded BokehJS.
    scatter.selection_glyph = Scatter(x="x", y="y", size=MARKER_SIZE, fill_alpha=0, line_alpha=0)
    scatter.nonselection_glyph = Scatter(x="x", y="y", size=MARKER_SIZE, fill_alpha=0, line_alpha=0)
    p.x_range.renderers = [scatter]
    p.y_range.renderers = [scatter]
    for tool in (lasso, p.select_one(BoxSelectTool), p.select_one(TapTool)):
        tool.renderers = [scatter]  # the image is not selectable
    # The hover card is the page's (static/map/hover.js: the row nearest the cursor): Bokeh's
    # tooltip would render a template for every point under a dense cursor (hundreds at 1M).
    p.add_tools(HoverTool(renderers=[scatter], tooltips=None, callback=CustomJS(code=MAP_HOVER_JS)))
    p.axis.visible = False
    p.grid.visible = False
    source.selected.js_on_change("indices", CustomJS(args={"source": source}, code=MAP_SELECTION_JS))
    return p


def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> figure:
    """Confusion-matrix heatmap, rows = given label, columns = predicted label.

    Colour is the row-normalised rate (so small intents are readable); the count is
    printed in each cell. Tapping a cell calls ``hlReport.onCell(given, predicted)``.
    """
    given, predicted, count, rate, text, ink = [], [], [], [], [], []
    for i, g in enumerate(labels):
        total = sum(matrix[i]) if matrix else 0
        for j, pr in enumerate(labels):
            c = int(matrix[i][j]) if matrix else 0
            given.append(g)
            predicted.append(pr)
            count.append(c)
            rate.append(c / total if total else 0.0)
            text.append(str(c) if c else "")
            ink.append("#ffffff" if rate[-1] > 0.55 else "#222222")
    source = ColumnDataSource(dict(given=given, predicted=predicted, count=count, rate=rate, text=text, ink=ink),
                              name="confusion")
    side = max(360, 34 * len(labels) + 160)
    p = figure(x_range=list(labels), y_range=list(reversed(labels)), width=side + 80, height=side,
               tools="tap,save", toolbar_location="above", x_axis_label="predicted", y_axis_label="given (annotated)",
               name="confusion_matrix")
    mapper = LinearColorMapper(palette=list(reversed(Blues256)), low=0, high=1)
    p.rect("predicted", "given", 1, 1, source=source, fill_color={"field": "rate", "transform": mapper},
           line_color="#ffffff", nonselection_fill_alpha=0.6, selection_line_color="#d62728", selection_line_width=2)
    p.text("predicted", "given", text="text", source=source, text_align="center", text_baseline="middle",
           text_font_size="9pt", text_color="ink")
    p.xaxis.major_label_orientation = 0.9
    p.add_layout(ColorBar(color_mapper=mapper, ticker=BasicTicker(desired_num_ticks=5), title="row rate"), "right")
    p.add_tools(HoverTool(tooltips=[("given", "@given"), ("predicted", "@predicted"), ("rows", "@count"),
                                    ("row rate", "@rate{0.0%}")]))
    p.select_one(TapTool).behavior = "select"
    source.selected.js_on_change("indices", CustomJS(args={"source": source}, code=CONFUSION_TAP_JS))
    return p


def reliability_figure(bins: Sequence[dict]) -> figure:
    """Reliability diagram: accuracy vs mean confidence per bin; the diagonal is perfect calibration.

    ``bins`` are :func:`hl_debug.scoring.report.reliability`'s: dicts with lo, hi, n,
    confidence and accuracy.
    """
    p = figure(width=420, height=380, x_range=Range1d(0, 1), y_range=Range1d(0, 1.02), tools="save,hover",
               x_axis_label="confidence", y_axis_label="accuracy", name="reliability",
               tooltips=[("bin", "@lo{0.0}–@hi{0.0}"), ("confidence", "@confidence{0.000}"),
                         ("accuracy", "@accuracy{0.000}"), ("rows", "@n")])
    p.line([0, 1], [0, 1], line_dash="dashed", line_color="#888888")
    src = ColumnDataSource({k: [b[k] for b in bins] for k in ("lo", "hi", "confidence", "accuracy", "n")})
    p.quad(left="lo", right="hi", bottom=0, top="accuracy", source=src, fill_alpha=0.25,
           fill_color=Category10[3][0], line_color=Category10[3][0])
    p.line("confidence", "accuracy", source=src, line_width=2, color=Category10[3][1])
    p.scatter("confidence", "accuracy", source=src, size=7, color=Category10[3][1])
    return p


def entropy_figure(edges: Sequence[float], counts: dict[str, Sequence[int]]) -> figure:
    """Entropy distribution per split: one step line per split on the shared bin ``edges``
    (length n_bins + 1), ``counts`` per split (length n_bins) normalised to shares."""
    p = figure(width=520, height=380, tools="save", x_axis_label="prediction entropy (nats)",
               y_axis_label="share of rows", name="entropy_by_split")
    palette = Category10[10]
    xs = list(edges)
    for k, (split, c) in enumerate(sorted(counts.items())):
        total = sum(c) or 1
        ys = [v / total for v in c] + [c[-1] / total]
        p.step(xs, ys, mode="after", line_width=2, color=palette[k % 10], legend_label=f"{split} ({sum(c)})")
    if counts:
        p.legend.location = "top_right"
    return p


def intent_entropy_figure(by_intent: dict[str, dict]) -> figure:
    """Mean prediction entropy per intent (horizontal bars, most uncertain on top).

    ``by_intent`` maps an intent to entropy quantiles (n, mean, q50, q90, ...; annotated
    rows count under their given intent, unannotated ones under the predicted intent);
    intents without rows are left out.
    """
    rows = sorted(((k, d) for k, d in by_intent.items() if d["n"]), key=lambda kv: kv[1]["mean"])
    intents = [k for k, _ in rows]
    p = figure(y_range=intents or ["none"], width=520, height=max(260, 24 * len(rows) + 80), tools="save,hover",
               x_axis_label="mean entropy (nats)", name="entropy_by_intent",
               tooltips=[("intent", "@intent"), ("mean", "@mean{0.000}"), ("median", "@q50{0.000}"),
                         ("90th percentile", "@q90{0.000}"), ("rows", "@n")])
    src = ColumnDataSource({"intent": intents, **{k: [d[k] for _, d in rows] for k in ("mean", "q50", "q90", "n")}})
    p.hbar(y="intent", right="mean", height=0.7, source=src, color=Category10[3][0])
    return p
