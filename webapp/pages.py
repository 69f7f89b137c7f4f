"""The HTML pages: map, clusters, issues, queue, model report; plus BokehJS from the installed package.
(``/discover`` is its own blueprint: :mod:`webapp.discover`.)"""

from __future__ import annotations

import json
from pathlib import Path

from bokeh.embed import json_item
from bokeh.palettes import Category20
from bokeh.util.paths import bokehjs_path
from flask import Blueprint, abort, current_app, render_template, request, send_from_directory

from hl_debug.domain import OUT_OF_SCOPE
from hl_debug.storage import CLUSTERS, POINTS, Table
from webapp import plots
from webapp.db import evidence, get_store, signal_table
from webapp.discover import queue_groups

bp = Blueprint("pages", __name__)

BOKEH_FILES = ("bokeh.min.js", "bokeh-gl.min.js")
#: The clusters page's sorts: orders declared on :data:`~hl_debug.storage.CLUSTERS`.
SORTS = ("impurity", "unannotated", "size")
#: Label-issue columns the issues page shows in its own cells (the rest is listed as evidence).
STANDARD_ISSUE_COLUMNS = frozenset({"id", "rank", "score", "given_label", "suggested_label", "flagged", "reason"})


def _missing(table: Table, step: str) -> str | None:
    """A message naming the step to run when ``table`` is missing or empty, else None."""
    if get_store().table_count(table) == 0:
        return f"No {table.name} yet. Run `hl-debug {step}` first (or `hl-debug run EXPORT` for the whole pipeline)."
    return None


def _page_args() -> tuple[int, int]:
    size = current_app.config["PAGE_SIZE"]
    try:
        page = max(1, int(request.args.get("page", 1)))
    except ValueError:
        abort(400, f"query parameter 'page' must be a positive integer, got {request.args.get('page')!r}")
    return page, size


@bp.get("/")
def map_view():
    """The map of every utterance with the linked inspector."""
    store = get_store()
    store.require_utterances()
    missing = _missing(POINTS, "analyze")
    clusters = store.table_rows(CLUSTERS, order="cluster_id")
    intents = store.review_labels()  # the export's intents and those reviews created
    config = plots.map_config(labels=intents, clusters=clusters, has_predictions=store.active_endpoint() is not None)
    return render_template("map.html", missing=missing, item=None if missing else plots.map_item(),
                           config=config, intents=intents, clusters=clusters, stats=store.stats())


@bp.get("/clusters")
def clusters_view():
    """Clusters ranked by impurity, with label mix and minority-label rows."""
    store = get_store()
    store.require_utterances()
    missing = _missing(CLUSTERS, "analyze")
    sort = request.args.get("sort", "impurity")
    rows, minority, n_minority = [], {}, {}
    if not missing:
        if sort not in SORTS:
            abort(400, f"unknown sort {sort!r}; valid: {', '.join(SORTS)}")
        rows = store.table_rows(CLUSTERS, order=sort)  # pure / well-covered clusters have no rank: NULLs last
        for c in rows:
            c["label_counts"] = json.loads(c["label_counts"]) if isinstance(c.get("label_counts"), str) else (c.get("label_counts") or {})
            total = sum(c["label_counts"].values()) or 1
            c["mix"] = [(k, v, 100 * v / total) for k, v in sorted(c["label_counts"].items(), key=lambda kv: -kv[1])]
        # At 100k utterances the clusters hold ~8k minority rows (a second of templating): the
        # page shows the first few of each (the map's inspector lists all of a cluster's rows).
        minority, n_minority = store.minority_rows(current_app.config["MINORITY_ROWS"], evidence=evidence())
        likely = likely_errors(store.report("analysis"))
        for cid, shown in minority.items():  # likely errors first; the issue-score order within each part
            for r in shown:
                r["likely_error"] = r["id"] in likely.get(cid, ())
            shown.sort(key=lambda r: not r["likely_error"])
        for c in rows:
            c["n_likely_errors"] = len(likely.get(c["cluster_id"], ()))
    labels = store.intents()
    colors = {lab: Category20[20][i % 20] for i, lab in enumerate(labels)}
    return render_template("clusters.html", missing=missing, clusters=rows, minority=minority,
                           n_minority=n_minority, colors=colors, sort=sort)


def likely_errors(analysis: dict | None) -> dict[int, set[int]]:
    """``{cluster: ids}`` of the suspects the analyze step marked ``likely_error`` (their label
    is rare among their neighbours too, not only in the cluster: ``hl_debug.scoring.suspects``)."""
    return {int(c["cluster_id"]): {int(s["id"]) for s in c.get("suspects", []) if s.get("likely_error")}
            for c in (analysis or {}).get("impure_clusters", [])}


@bp.get("/issues")
def issues_view():
    """Suspected label errors, ranked, with evidence and review actions."""
    store = get_store()
    store.require_utterances()
    table = signal_table("issues")
    missing = _missing(table, "signals")
    page, size = _page_args()
    pending = request.args.get("pending", "1") == "1"
    flagged = request.args.get("flagged") == "1"
    rows, total = [], 0
    if not missing:
        cols = store.table_columns(table.name)
        extra_cols = [c for c in cols if c not in STANDARD_ISSUE_COLUMNS]
        ids, total = store.ranked_page(table, order="score", pending_only=pending,
                                       equals={"flagged": 1} if flagged and "flagged" in cols else None,
                                       limit=size, offset=(page - 1) * size)
        rows = store.inspector_rows(ids, evidence=evidence())
        if extra_cols and rows:
            extra = {r["id"]: r for r in store.table_rows(table, ids=[r["id"] for r in rows])}
            for r in rows:
                r["evidence"] = {c: extra.get(r["id"], {}).get(c) for c in extra_cols}
    from hl_debug.signals.label_issues import remaining_figures

    n_decided = store.n_decided()
    summary = store.report("label_issues")
    summary = summary if isinstance(summary, dict) else {}
    return render_template("issues.html", missing=missing, rows=rows, total=total, page=page, size=size,
                           pending=pending, flagged=flagged, n_decided=n_decided,
                           labels=[lab for lab in store.review_labels() if lab != OUT_OF_SCOPE],
                           n_flagged=summary.get("n_flagged"), precision=summary.get("estimated_precision"),
                           label_issues=summary, remaining=remaining_figures(store) if not missing else None)


@bp.get("/queue")
def queue_view():
    """The annotation queue with one-key labelling and progress. Rows the out-of-scope signal
    puts in a candidate group are listed under their group, with no intent pre-selected."""
    store = get_store()
    store.require_utterances()
    table = signal_table("queue")
    missing = _missing(table, "signals")
    page, size = _page_args()
    rows, total, done, groups = [], 0, 0, {}
    if not missing:
        ids, pending = store.ranked_page(table, order="rank", pending_only=True, limit=size, offset=(page - 1) * size)
        total = store.table_count(table)
        done = total - pending
        rows, groups = queue_groups(store, table, store.inspector_rows(ids, evidence=evidence()))
    return render_template("queue.html", missing=missing, rows=rows, total=total, done=done, page=page,
                           labels=[lab for lab in store.review_labels() if lab != OUT_OF_SCOPE], groups=groups)


@bp.get("/report")
def report_view():
    """The stored model report: per-intent metrics, confusion matrix, reliability, entropy, unanswered rows."""
    from hl_debug.domain import REPORT_SPLITS
    from webapp.model_report import check_split

    store = get_store()
    store.require_utterances()
    endpoints = [e["endpoint"] for e in store.endpoints()]
    if not endpoints:
        return render_template("report.html", missing="No predictions yet. Run `hl-debug predict` first "
                               "(or `hl-debug run EXPORT` for the whole pipeline).", endpoints=[], splits=REPORT_SPLITS)
    endpoint = request.args.get("endpoint") or store.active_endpoint() or endpoints[0]
    if endpoint not in endpoints:
        abort(404, f"no predictions for endpoint {endpoint!r}; known: {', '.join(endpoints)}")
    split = check_split(request.args.get("split", "evaluation"))
    rep = current_app.extensions["hl_reports"].report(store, endpoint)
    if rep is None or split not in rep["splits"]:
        what = "No model report" if rep is None else f"No '{split}' rows in the stored model report"
        return render_template("report.html", missing=f"{what} for {endpoint} yet. Run `hl-debug signals` "
                               "(with --force for a report stored by an older version) or `hl-debug run EXPORT`.",
                               endpoints=endpoints, splits=REPORT_SPLITS)
    sel, ent = rep["splits"][split], rep["entropy"]
    items = {
        "confusion": json_item(plots.confusion_figure(**sel["confusion"])) if sel["confusion"] else None,
        "reliability": json_item(plots.reliability_figure(sel["calibration"]["bins"])) if sel["calibration"]["n"] else None,
        "entropy": json_item(plots.entropy_figure(**ent["histogram"])) if ent["histogram"]["counts"] else None,
        "intent_entropy": (json_item(plots.intent_entropy_figure(ent["by_intent"]))
                           if any(d["n"] for d in ent["by_intent"].values()) else None),
    }
    label_issues = store.report("label_issues")
    return render_template("report.html", missing=None, rep=rep, sel=sel, items=items, endpoint=endpoint,
                           endpoints=endpoints, split=split, splits=REPORT_SPLITS,
                           label_issues=label_issues if isinstance(label_issues, dict) else None,
                           config={"endpoint": endpoint, "split": split})


@bp.get("/bokehjs/<path:filename>")
def bokehjs(filename: str):
    """BokehJS from the installed bokeh package (no CDN)."""
    if filename not in BOKEH_FILES:
        abort(404, f"unknown BokehJS file {filename!r}")
    return send_from_directory(Path(bokehjs_path()) / "js", filename, max_age=3600)
