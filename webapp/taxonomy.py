"""The ``/taxonomy`` page: the taxonomy advisor's findings and the actions that follow from them.

It reads what the ``taxonomy`` signal stores (see ``hl_debug/signals/taxonomy.py``): the
``taxonomy`` table (the ranked merge / split / boundary findings) and the ``taxonomy``
report (the intent x intent overlap matrices, each pair's merge record with near-identical
utterances labelled differently, each intent's split groups, each confusable pair's boundary
rule with its violators). The page shows the overlap as a Bokeh heatmap (a click on a cell
lists the rows the two intents exchange), one card per finding with its evidence, each
linked to the map (``/?ids=...``, which selects the rows and lists them in the inspector),
and the actions — merge two intents, rename one, split a card's group off into a new
intent — previewed, applied and reverted through the JSON routes below, which call
:mod:`hl_debug.steps.taxonomy_actions`.

Routes (POSTs pass the app's same-origin and JSON checks, ``webapp/security.py``):
``POST /api/taxonomy/preview`` and ``/api/taxonomy/apply`` (``{"kind": "merge"|"rename"|"split",
"a", "b", "label", "group", "allow_clash", "expected_rows"}``; a split's ``group`` is the
group's number on the intent's split card, 1 = the largest, whose member ids the stored
report lists), ``POST /api/taxonomy/revert`` (``{"batch",
"preview"}``), ``GET /api/taxonomy/cell?a=&b=`` and ``GET /api/taxonomy/changes``.
"""

from __future__ import annotations

import json
from typing import Any

from bokeh.embed import json_item
from bokeh.models import BasicTicker, ColorBar, ColumnDataSource, CustomJS, HoverTool, LinearColorMapper, TapTool
from bokeh.palettes import Oranges256
from bokeh.plotting import figure
from flask import Blueprint, abort, jsonify, render_template, request

from hl_debug.domain import OUT_OF_SCOPE
from hl_debug.errors import AnnotationError
from hl_debug.steps import taxonomy_actions as actions
from webapp import security
from webapp.api import json_body
from webapp.db import evidence, get_store, signal_table

bp = Blueprint("taxonomy", __name__)

SIGNAL = "taxonomy"
MAP_IDS = 500  # ids a map link carries (the map keeps at most this many in its URL)
CARD_ROWS = 8  # violator / member rows listed on a card (its map link covers all)
CELL_ROWS = 200  # rows a heatmap cell lists
MISSING = ("No taxonomy analysis yet. Run `hl-debug signals` (or `hl-debug run EXPORT` for the whole pipeline) "
           "to find the intents to merge, to split, and the boundaries that need a rule.")
CELL_TAP_JS = ("const i = source.selected.indices[0];"
               "if (i !== undefined && window.hlTaxonomy) window.hlTaxonomy.onCell(source.data.a[i], source.data.b[i]);")
SOURCE_NAMES = {"confident_learning": "cleanlab joint", "out_of_fold": "out-of-fold", "neighbors": "neighbours"}


def reviewer() -> str | None:
    """Who acts (team mode), from ``webapp.security.reviewer`` where the app has one."""
    fn = getattr(security, "reviewer", None)
    return fn() if callable(fn) else None


def heatmap(report: dict) -> figure:
    """Intent x intent merge score (the symmetric overlap, 0 on the diagonal); a tap calls
    ``window.hlTaxonomy.onCell(a, b)`` (static/taxonomy.js)."""
    classes = list(report["classes"])
    overlap = report["overlap"]
    score = overlap["score"]
    cols: dict[str, list] = {"a": [], "b": [], "score": [], "text": [], "ink": []}
    sources = [s for s in overlap if s != "score"]
    for s in sources:
        cols[s] = []
    for i, a in enumerate(classes):
        for j, b in enumerate(classes):
            v = score[i][j] or 0.0
            cols["a"].append(a)
            cols["b"].append(b)
            cols["score"].append(v)
            cols["text"].append(f"{v:.2f}" if v >= 0.01 and len(classes) <= 30 else "")
            cols["ink"].append("#ffffff" if v > 0.3 else "#222222")
            for s in sources:
                cols[s].append(overlap[s][i][j] or 0.0)
    source = ColumnDataSource(cols, name="overlap")
    side = max(380, min(1400, 30 * len(classes) + 200))
    p = figure(x_range=classes, y_range=list(reversed(classes)), width=side + 80, height=side, tools="tap,save",
               toolbar_location="above", name="taxonomy_overlap", x_axis_label="intent", y_axis_label="intent")
    high = max(0.05, max(cols["score"], default=0.0))
    mapper = LinearColorMapper(palette=list(reversed(Oranges256)), low=0, high=high)
    p.rect("b", "a", 1, 1, source=source, fill_color={"field": "score", "transform": mapper}, line_color="#ffffff",
           nonselection_fill_alpha=0.6, selection_line_color="#1f77b4", selection_line_width=2)
    p.text("b", "a", text="text", source=source, text_align="center", text_baseline="middle", text_font_size="8pt",
           text_color="ink")
    p.xaxis.major_label_orientation = 0.9
    p.add_layout(ColorBar(color_mapper=mapper, ticker=BasicTicker(desired_num_ticks=5), title="overlap"), "right")
    p.add_tools(HoverTool(tooltips=[("intents", "@a ↔ @b"), ("merge score", "@score{0.000}")]
                          + [(SOURCE_NAMES.get(s, s.removeprefix("endpoint:")), f"@{{{s}}}{{0.000}}") for s in sources]))
    p.select_one(TapTool).behavior = "select"
    source.selected.js_on_change("indices", CustomJS(args={"source": source}, code=CELL_TAP_JS))
    return p


def _ids(raw: Any) -> list[int]:
    try:
        ids = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return []
    return [int(i) for i in ids or () if isinstance(i, int)]


def _pair_key(a: str, b: str | None) -> tuple[str, str]:
    return (a, b) if b is None or a <= b else (b, a)  # type: ignore[return-value]


def cards(store: Any, findings: list[dict], report: dict) -> list[dict]:
    """One card per finding: its table row plus the report's evidence (the pair's record and
    rule, or the intent's groups) and the rows it shows (texts, effective labels)."""
    merges = {_pair_key(m["intent_a"], m["intent_b"]): m for m in report.get("merge", [])}
    rules = {_pair_key(r["intent_a"], r["intent_b"]): r for r in report.get("boundary", [])}
    splits = {s["intent"]: s for s in report.get("split", [])}
    wanted: set[int] = set()
    out = []
    for f in findings:
        card = dict(f)
        card["id_list"] = _ids(f.get("ids"))
        if f["kind"] == "split":
            rec = splits.get(f["intent_a"], {})
            card["groups"] = [dict(g) for g in rec.get("groups", [])]
            for g in card["groups"]:
                g["map_ids"] = ",".join(map(str, g["ids"][:MAP_IDS]))
                g["spread_n"] = {k: len(v) for k, v in g.get("spread", {}).items()}
                wanted.update(g.get("examples", []))
        else:
            key = _pair_key(f["intent_a"], f["intent_b"])
            rec, rule = merges.get(key, {}), rules.get(key)
            card["sources"] = {SOURCE_NAMES.get(s, s.removeprefix("endpoint:")): rec[s] for s in rec
                               if s not in ("intent_a", "intent_b", "a", "b", "score", "n_a", "n_b", "pairs")}
            card["pairs"] = rec.get("pairs", [])
            card["rule"] = rule
            card["violators"] = (rule or {}).get("violators", [])
            wanted.update(i for p in card["pairs"] for i in p[:2])
            wanted.update(card["violators"][:CARD_ROWS])
        card["map_ids"] = ",".join(map(str, card["id_list"][:MAP_IDS]))
        out.append(card)
    rows = {r["id"]: r for r in store.inspector_rows(sorted(wanted))} if wanted else {}
    for card in out:
        card["rows"] = rows
    return out


@bp.get("/taxonomy")
def taxonomy_view():
    """The overlap heatmap, the ranked findings as cards, the merge / rename form and the changes made."""
    store = get_store()
    store.require_utterances()
    table = signal_table(SIGNAL)
    report = store.report(SIGNAL)
    ran = store.table_exists(table.name) and isinstance(report, dict) and report.get("classes")
    findings = store.table_rows(table, order="rank") if ran else []
    has_overlap = bool(ran and report.get("overlap"))
    return render_template(
        "taxonomy.html", missing=None if ran else MISSING, report=report if ran else None,
        cards=cards(store, findings, report) if ran else [],
        counts={k: n for k, n in store.label_counts().items() if k != OUT_OF_SCOPE},  # reserved: never merged
        heatmap=json_item(heatmap(report)) if has_overlap else None, changes=actions.changes(store))


# -- JSON routes ----------------------------------------------------------------------------

ACTION_FIELDS = ("kind", "a", "b", "label", "group", "allow_clash", "expected_rows")


def _action_args(body: dict) -> tuple[tuple, dict]:
    kwargs = {"label": body.get("label"), "allow_clash": body.get("allow_clash", False)}
    if body.get("kind") == "split":
        kwargs["ids"] = actions.split_group_ids(get_store().report(SIGNAL), body.get("a"), body.get("group"))
    elif body.get("group") not in (None, ""):
        raise AnnotationError("field 'group' applies to a split only (the split card's group to split off)")
    return (body.get("kind"), body.get("a"), body.get("b")), kwargs


@bp.post("/api/taxonomy/preview")
def preview():
    """What a merge, rename or split would change (stores nothing): rows per current label, examples."""
    args, kwargs = _action_args(json_body(ACTION_FIELDS[:-1]))
    return jsonify(actions.plan(get_store(), *args, **kwargs))


@bp.post("/api/taxonomy/apply")
def apply():
    """Carry out a merge, rename or split as one batch of decisions; 201 with the plan and ``batch``."""
    body = json_body(ACTION_FIELDS)
    args, kwargs = _action_args(body)
    out = actions.apply(get_store(), *args, **kwargs, expected_rows=body.get("expected_rows"), reviewer=reviewer())
    return jsonify(out), 201


@bp.post("/api/taxonomy/revert")
def revert():
    """Undo a merge, rename or split (``{"batch"}``; ``"preview": true`` only counts); 201 when applied."""
    body = json_body(("batch", "preview"))
    if body.get("preview"):
        p = actions.plan_revert(get_store(), body.get("batch"))
        return jsonify({k: v for k, v in p.items() if k != "rows"})
    return jsonify(actions.revert(get_store(), body.get("batch"), reviewer=reviewer())), 201


@bp.get("/api/taxonomy/changes")
def changes():
    """The merges, renames and splits made so far, newest first."""
    return jsonify({"changes": actions.changes(get_store())})


@bp.get("/api/taxonomy/cell")
def cell():
    """The rows behind heatmap cell ``?a=&b=``: near-identical pairs labelled differently, the
    boundary rule's violators and the label-issue rows whose suggestion crosses the pair (for
    ``a == b``: the intent's rows). Rows carry their effective label."""
    a, b = request.args.get("a", ""), request.args.get("b", "")
    if not a or not b:
        abort(400, "missing query parameter 'a' or 'b': the two intents of the cell")
    store = get_store()
    report = store.report(SIGNAL)
    if not isinstance(report, dict) or a not in report.get("classes", []) or b not in report.get("classes", []):
        abort(404, f"no taxonomy analysis of intents {a!r} and {b!r}; run `hl-debug signals`")
    if a == b:
        ids = [r["id"] for r in store.labelled_rows([a])]
        why = f"rows labelled {a}"
    else:
        key = _pair_key(a, b)
        rec = next((m for m in report.get("merge", []) if _pair_key(m["intent_a"], m["intent_b"]) == key), {})
        rule = next((r for r in report.get("boundary", []) if _pair_key(r["intent_a"], r["intent_b"]) == key), {})
        ids = [i for p in rec.get("pairs", []) for i in p[:2]] + list(rule.get("violators", []))
        issues = signal_table("issues")
        if store.table_exists(issues.name) and {"given_label", "suggested_label"} <= set(store.table_columns(issues.name)):
            for x, y in ((a, b), (b, a)):
                ids += [r["id"] for r in store.table_rows(issues, order="score",
                                                          equals={"given_label": x, "suggested_label": y})]
        ids = list(dict.fromkeys(ids))
        why = f"rows {a} and {b} exchange"
    score = None
    if a != b:
        i, j = report["classes"].index(a), report["classes"].index(b)
        score = report.get("overlap", {}).get("score", [[None]])[i][j] if report.get("overlap") else None
    rows = store.inspector_rows(ids[:CELL_ROWS], evidence=evidence())
    return jsonify({"a": a, "b": b, "score": score, "what": why, "n": len(ids), "rows": rows,
                    "map_ids": ids[:MAP_IDS]})
