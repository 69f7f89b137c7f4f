"""The ``/compare`` page (any two endpoints side by side) and ``POST /api/retrain`` (the
retrain button of ``/report``, in ``templates/_retrain.html``).

The page reads :func:`hl_debug.steps.compare.compare_endpoints`: the agreement, accuracy and
macro F1 under the corrected and the original labels with paired intervals, the per-intent F1
differences (a Bokeh figure and a table), the clusters where B is significantly worse, and
the rows whose answer changed, grouped by cluster with a link that opens them on the map
coloured by "changed between the last two models".
"""

from __future__ import annotations

from typing import Any

from bokeh.embed import json_item
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure
from flask import Blueprint, jsonify, render_template, request

from hl_debug.errors import ConfigError
from hl_debug.steps.compare import aliases, compare_endpoints
from hl_debug.steps.retrain import retrain
from webapp.db import get_store

bp = Blueprint("compare", __name__)

#: Intents drawn in the per-intent figure (the largest changes; the table lists all).
FIGURE_INTENTS = 40
#: Ids a cluster's map link carries.
MAP_IDS = 500


def delta_figure(per_intent: dict[str, dict], *, limit: int = FIGURE_INTENTS) -> figure:
    """Per-intent F1 change B - A with its paired 95% interval, the largest changes first."""
    rows = sorted(per_intent.items(), key=lambda kv: -abs(kv[1]["delta"]))[:limit]
    rows.reverse()  # Bokeh draws the first factor at the bottom
    names = [k for k, _ in rows]
    src = ColumnDataSource({
        "intent": names, "delta": [m["delta"] for _, m in rows], "low": [m["low"] for _, m in rows],
        "high": [m["high"] for _, m in rows], "support": [m["support"] for _, m in rows],
        "colour": ["#d62728" if m["high"] < 0 else "#2ca02c" if m["low"] > 0 else "#7f7f7f" for _, m in rows]})
    fig = figure(y_range=names, height=max(160, 18 * len(names) + 60), sizing_mode="stretch_width",
                 title="F1 change per intent (B − A), 95% paired interval", toolbar_location=None)
    fig.segment(x0="low", x1="high", y0="intent", y1="intent", source=src, line_color="colour", line_width=2)
    fig.scatter(x="delta", y="intent", source=src, size=7, color="colour")
    fig.add_tools(HoverTool(tooltips=[("intent", "@intent"), ("ΔF1", "@delta{+0.000}"),
                                      ("95% CI", "@low{+0.000} to @high{+0.000}"), ("rows", "@support")]))
    fig.xaxis.axis_label = "F1 of B minus F1 of A"
    return fig


def _choices(store: Any) -> list[dict]:
    """The endpoint pickers' options: every endpoint, with its aliases and version."""
    by_name: dict[str, list[str]] = {}
    for alias, name in aliases(store).items():
        by_name.setdefault(name, []).append(alias)
    return [{"endpoint": e["endpoint"], "aliases": by_name.get(e["endpoint"], []), "version": e.get("version"),
             "n": e["n"], "trained_at": e.get("trained_at")} for e in store.endpoints()]


@bp.get("/compare")
def compare_view():
    """Two endpoints side by side (``?a=&b=``; default: the last retrain's two versions)."""
    store = get_store()
    store.require_utterances()
    choices = _choices(store)
    if not choices:
        return render_template("compare.html", missing="No predictions yet. Run `hl-debug predict` (or "
                               "`hl-debug run EXPORT`), then `hl-debug retrain` after a review.", choices=[])
    names = aliases(store)
    pair = store.model_change_pair()
    default_a = pair[0] if pair else names.get("previous") or names.get("recorded") or choices[-1]["endpoint"]
    default_b = pair[1] if pair else names.get("latest") or choices[0]["endpoint"]
    a, b = request.args.get("a") or default_a, request.args.get("b") or default_b
    out = compare_endpoints(store, a, b, n_boot=request.args.get("n_boot", 1000, type=int))
    members: dict[Any, list[int]] = {}
    for r in out["rows"]:
        members.setdefault(r["cluster_id"], []).append(r["id"])
    clusters = [{**c, "ids": members.get(c["cluster_id"], [])[:MAP_IDS]} for c in out["by_cluster"]]
    per_intent = sorted(out["per_intent"].items(), key=lambda kv: kv[1]["delta"])
    item = json_item(delta_figure(out["per_intent"])) if out["per_intent"] else None
    return render_template("compare.html", missing=None, choices=choices, out=out, clusters=clusters,
                           per_intent=per_intent, items={"delta": item},
                           map_colours=pair is not None and pair == (out["a"], out["b"]))


@bp.post("/api/retrain")
def retrain_route():
    """Retrain the local model on the corrected labels (``hl-debug retrain``); its JSON."""
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    n_boot = body.get("n_boot", 1000)
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or not 1 <= n_boot <= 100_000:
        raise ConfigError(f"n_boot must be an integer from 1 to 100000, got {n_boot!r}")
    against = body.get("against")
    out = retrain(get_store(), against=str(against) if against else None, n_boot=n_boot)
    return jsonify(out)
