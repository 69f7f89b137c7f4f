"""The JSON API (``/api/...``): column arrays for the map, full rows for the inspector,
clusters, issues, queue, search, confusion cells, and review decisions."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from flask import Blueprint, Response, abort, current_app, jsonify, request

from hl_debug.errors import MissingFieldError
from hl_debug.steps import review
from hl_debug.storage import CLUSTERS, NEIGHBORS, Store, Table
from webapp import compress, rowcache, security
from webapp.db import evidence, get_store, signal_table

bp = Blueprint("api", __name__)

#: An integer as a query parameter holds it: ASCII digits, an optional minus sign, and no more
#: than 19 digits (SQLite's INTEGER range; Python's own int() also takes "²"-like digits and "1_000").
INT_TEXT = re.compile(r"-?[0-9]{1,19}")
INT64_MAX = 2**63 - 1
IDS_TEXT = re.compile(r"[0-9]{1,19}(?:,[0-9]{1,19})*")


def parse_int(raw: str, what: str) -> int:
    """``raw`` as an integer in SQLite's range, else 400 naming ``what`` (e.g. "query parameter 'limit'")."""
    if not INT_TEXT.fullmatch(raw.strip()) or abs(int(raw)) > INT64_MAX:
        abort(400, f"{what} must be an integer between {-INT64_MAX} and {INT64_MAX}, got {raw[:40]!r}")
    return int(raw)


def _int_arg(name: str, default: int, *, lo: int = 0, hi: int = 100_000) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    value = parse_int(raw, f"query parameter '{name}'")
    if not lo <= value <= hi:
        abort(400, f"query parameter '{name}' must be between {lo} and {hi}, got {value}")
    return value


def _window() -> tuple[int, int]:
    """``?limit=`` (default 50) and ``?offset=`` of a ranked list."""
    return _int_arg("limit", 50, lo=1, hi=5000), _int_arg("offset", 0, hi=10**9)


def _require_table(store: Store, table: Table, what: str, *, step: str) -> None:
    """409 naming the step to run when ``table`` (written by ``step``) does not exist yet."""
    if not store.table_exists(table.name):
        abort(409, f"no {what} yet: run `hl-debug {step}` (or `hl-debug run EXPORT`) first")


def parse_ids(raw: str | None, *, limit: int) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``; 400 on anything else."""
    if raw is None or not raw.strip():
        abort(400, "missing query parameter 'ids': comma-separated utterance ids, e.g. ?ids=1,2,3")
    if IDS_TEXT.fullmatch(raw):  # the common case, without the per-part checks below
        ids = list(map(int, raw.split(",")))
        if len(ids) <= limit and max(ids) <= INT64_MAX:
            return ids
    parts = raw.split(",")
    if len(parts) > limit:
        abort(400, f"too many ids ({len(parts)}); ask for at most {limit} per request")
    ids = []
    for part in parts:
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or len(part.lstrip("0")) > 19 or int(part) > INT64_MAX:
            abort(400, f"query parameter 'ids' must hold non-negative integers (at most {INT64_MAX}) separated by "
                       f"commas; got {part[:40]!r}")
        ids.append(int(part))
    if len(ids) > limit:
        abort(400, f"too many ids ({len(ids)}); ask for at most {limit} per request")
    return ids


@bp.get("/health")
def health():
    """Readiness: the database answers, and whether the start-up thread is still preparing
    the map's data and the inspector's rows (``warming``: requests are answered meanwhile,
    only slower). For a process manager's or load balancer's readiness check."""
    get_store().data_version()
    thread = current_app.extensions.get("hl_warm")
    return jsonify({"ok": True, "warming": bool(thread is not None and thread.is_alive())})


@bp.get("/points")
def points():
    """Every utterance as compact column arrays (typed arrays in base64, see ``points.py``),
    cached per database state; 304 when the client's copy is current."""
    store, cache = get_store(), current_app.extensions["hl_points"]
    state = store.map_state()
    etag = cache.etag(store, state)
    served = current_app.extensions.get("hl_map_served")
    response = _cached_json(etag, lambda gzipped: cache.get(store, gzipped=gzipped, state=state)[1])
    if served is not None and response.status_code == 200:
        served.set()  # the first map has its data: the start-up thread may encode the inspector's rows
    return response


@bp.get("/points/text")
def point_texts():
    """Every utterance's text in the map payload's row order (``mapdata.texts_body``), which
    the map page fetches once it is drawn (for the hover); cached per pipeline state, 304
    when the client's copy is current."""
    store, cache = get_store(), current_app.extensions["hl_texts"]
    state = store.map_state()
    return _cached_json(cache.key(store, state), lambda gzipped: cache.get(store, gzipped=gzipped, state=state)[1])


def _cached_json(etag: str, body: Callable[[bool], bytes]) -> Response:
    """A JSON response of ``body(gzipped)`` with a weak ``etag``, or a 304 when the client
    holds it; gzip-encoded when the client accepts it."""
    if request.if_none_match.contains_weak(etag):
        response = current_app.response_class(status=304)
    else:
        gzipped = compress.accepts_gzip()
        response = current_app.response_class(body(gzipped), mimetype="application/json")
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
    response.set_etag(etag, weak=True)
    response.headers["Cache-Control"] = "no-cache"  # keep it, but ask each time (a 304 is cheap)
    response.vary.add("Accept-Encoding")
    return response


def _json(body: bytes, status: int = 200):
    """A response of already-encoded JSON."""
    return current_app.response_class(body, status=status, mimetype="application/json")


def _rows(ids: list[int]) -> list[tuple[int, bytes, str | None]]:
    """The inspector rows of ``ids`` as JSON, from the app's :class:`~webapp.rowcache.RowCache`."""
    return current_app.extensions["hl_rows"].rows(get_store(), ids, evidence())


@bp.get("/utterances")
def utterances():
    """Full rows for ``?ids=1,2,3`` (unknown ids are listed under ``missing``)."""
    ids = parse_ids(request.args.get("ids"), limit=current_app.config["INSPECTOR_MAX_IDS"])
    rows = _rows(sorted(set(ids)))
    found = {i for i, _, _ in rows}
    missing = [i for i in ids if i not in found]
    if not rows:
        abort(404, f"no utterance with id {', '.join(map(str, missing[:10]))}")
    return _json(b'{"rows":' + rowcache.array([r for _, r, _ in rows]) + b',"missing":' + rowcache.encode(missing) + b"}")


@bp.get("/utterances/<int:utterance_id>")
def utterance(utterance_id: int):
    """One full row plus its decision history."""
    rows = _rows([utterance_id])
    if not rows:
        abort(404, f"no utterance with id {utterance_id}")
    history = rowcache.encode(get_store().annotations(utterance_id))
    return _json(rows[0][1][:-1] + b',"annotations":' + history + b"}")


@bp.get("/neighbors/<int:utterance_id>")
def neighbors(utterance_id: int):
    """The k nearest neighbours of one utterance with their effective labels."""
    store = get_store()
    store.get_utterance(utterance_id)  # 404 for an unknown id
    _require_table(store, NEIGHBORS, "nearest neighbours", step="analyze")
    return jsonify({"id": utterance_id, "neighbors": store.neighbors_of(utterance_id)})


@bp.get("/search")
def search():
    """Ids of utterances whose text contains ``?q=`` (case-insensitive)."""
    q = request.args.get("q", "").strip()
    if not q:
        abort(400, "missing query parameter 'q': the text to search for")
    limit = _int_arg("limit", 500, lo=1, hi=10_000)
    return jsonify({"q": q, "ids": get_store().search_ids(q, limit=limit)})


@bp.get("/labels")
def labels():
    """The labels a decision may use: the project's intents plus those reviews created."""
    return jsonify({"labels": get_store().review_labels()})


def _decode_cluster(row: dict) -> dict:
    out = dict(row)
    for key in ("label_counts", "usage_counts"):
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except json.JSONDecodeError:
                pass
    return out


@bp.get("/clusters")
def clusters():
    """Clusters ranked by impurity (most impure first)."""
    store = get_store()
    _require_table(store, CLUSTERS, "clusters", step="analyze")
    return jsonify({"clusters": [_decode_cluster(r) for r in store.table_rows(CLUSTERS, order="impurity")]})


@bp.get("/clusters/<int:cluster_id>")
def cluster(cluster_id: int):
    """One cluster and its rows, minority-label rows first."""
    store = get_store()
    _require_table(store, CLUSTERS, "clusters", step="analyze")
    found = store.cluster(cluster_id)
    if found is None:
        abort(404, f"no cluster with id {cluster_id}")
    c = _decode_cluster(found)
    rows = _rows(store.cluster_member_ids(cluster_id))
    major = c.get("majority_intent")
    minority = [r for _, r, label in rows if label and label != major]
    return _json(b'{"cluster":' + rowcache.encode(c) + b',"minority":' + rowcache.array(minority) + b',"ids":'
                 + rowcache.encode([i for i, _, _ in rows]) + b"}")


@bp.get("/issues")
def issues():
    """Suspected label errors by score (``?limit=&offset=&pending=1&flagged=1``)."""
    store = get_store()
    table = signal_table("issues")
    _require_table(store, table, "label-issue scores", step="signals")
    limit, offset = _window()
    flagged = request.args.get("flagged") == "1" and "flagged" in store.table_columns(table.name)
    ids, total = store.ranked_page(table, order="score", pending_only=request.args.get("pending") == "1",
                                   equals={"flagged": 1} if flagged else None, limit=limit, offset=offset)
    return jsonify({"total": total, "offset": offset, "issues": store.inspector_rows(ids, evidence=evidence())})


@bp.get("/queue")
def queue():
    """The annotation queue in recommended order, with review progress."""
    store = get_store()
    table = signal_table("queue")
    _require_table(store, table, "annotation queue", step="signals")
    limit, offset = _window()
    ids, total = store.ranked_page(table, order="rank", limit=limit, offset=offset)
    rows = store.inspector_rows(ids, evidence=evidence())
    progress = store.queue_progress(table)
    return jsonify({"total": total, "done": progress["done"], "labelled": progress["labelled"], "offset": offset,
                    "queue": rows})


@bp.get("/confusion")
def confusion():
    """Rows whose given label is ``?given=`` and predicted label ``?predicted=``."""
    given, predicted = request.args.get("given"), request.args.get("predicted")
    if not given or not predicted:
        abort(400, "missing query parameter 'given' or 'predicted' (the confusion-matrix cell)")
    split = request.args.get("split", "evaluation")
    store = get_store()
    ids = current_app.extensions["hl_reports"].cell_ids(store, given=given, predicted=predicted, split=split,
                                                          endpoint=request.args.get("endpoint"))
    return jsonify({"given": given, "predicted": predicted, "split": split,
                    "rows": store.inspector_rows(sorted(ids[:500]), evidence=evidence(),
                                                 endpoint=request.args.get("endpoint")),
                    "n": len(ids)})


@bp.get("/annotations")
def list_annotations():
    """Every decision, oldest first."""
    return jsonify({"annotations": get_store().annotations()})


DECISION_FIELDS = ("id", "action", "label", "new_intent", "allow_clash")


def json_body(fields: tuple[str, ...]) -> dict:
    """The JSON object of a POST, refusing fields other than ``fields`` (400); shared by
    every blueprint's POST routes."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise MissingFieldError(f"the body must be a JSON object with {', '.join(fields)}")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        abort(400, f"unknown field(s) {', '.join(unknown)}; expected {', '.join(fields)}")
    return body


@bp.post("/annotations")
def post_annotation():
    """Record a decision ``{"id", "action", "label"}`` (``"new_intent": true`` creates the
    label as a new intent; ``"allow_clash": true`` allows one differing from an existing
    intent only in case); 201 with the stored row."""
    body = json_body(DECISION_FIELDS)
    row = review.record_decision(get_store(), body.get("id"), body.get("action"), body.get("label"),
                                 new_intent=body.get("new_intent", False), allow_clash=body.get("allow_clash", False),
                                 reviewer=security.reviewer())
    return jsonify(row), 201


@bp.post("/annotations/batch")
def post_annotations():
    """Record one decision for many rows ``{"ids": [...], "action", "label", "new_intent",
    "allow_clash"}`` in one transaction (a candidate group named as a new intent, or marked
    ``out_of_scope``); 201 with ``{"n", "effective_label", "rows"}``."""
    body = json_body(("ids", *DECISION_FIELDS[1:]))
    rows = review.record_decisions(get_store(), body.get("ids"), body.get("action"), body.get("label"),
                                   new_intent=body.get("new_intent", False),
                                   allow_clash=body.get("allow_clash", False),
                                   limit=current_app.config["INSPECTOR_MAX_IDS"] * 10, reviewer=security.reviewer())
    return jsonify({"n": len(rows), "effective_label": rows[0]["effective_label"], "rows": rows}), 201
