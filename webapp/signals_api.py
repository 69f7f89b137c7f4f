"""The signals' JSON API: ``/api/signals`` lists the registered signals, ``/api/signals/<name>``
serves one — a page of its table in one of its named orders (filtered by its flags), and
its stored report. Everything comes from :mod:`hl_debug.signals.registry`, so a new signal
is served without an edit here."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from hl_debug.signals.base import Signal
from hl_debug.signals.label_issues import live_report
from hl_debug.signals.registry import all_signals, get_signal
from webapp.db import get_store

bp = Blueprint("signals_api", __name__)


def _describe(cls: type[Signal]) -> dict[str, Any]:
    return {
        "name": cls.name, "description": cls.description,
        "table": cls.table.name if cls.table is not None else None,
        "columns": list(cls.table.column_names) if cls.table is not None else [],
        "orders": list(cls.table.orders) if cls.table is not None else [],
        "flags": [flag.name for flag in cls.flags],
        "knobs": {k: {"default": knob.default, "help": knob.help} for k, knob in cls.defaults.items()},
        "report": cls.report_name,
        "evidence": dict(cls.evidence.columns) if cls.evidence is not None else {},
    }


def _int_arg(name: str, default: int, *, hi: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > hi:
        abort(400, f"query parameter '{name}' must be an integer between 0 and {hi}, got {raw!r}")
    return int(raw)


@bp.get("")
def signals():
    """Every registered signal: its table, columns, orders, flags, knobs and report."""
    return jsonify({"signals": [_describe(cls) for cls in all_signals()]})


@bp.get("/<name>")
def signal(name: str):
    """One signal's rows (``?order=&limit=&offset=`` and ``?<flag>=1``) and its stored report."""
    cls = get_signal(name)  # 404 listing the known names
    store = get_store()
    body: dict[str, Any] = {"name": cls.name}
    if cls.table is not None:
        if not store.table_exists(cls.table.name):
            abort(409, f"no {cls.name} yet: run `hl-debug signals` (or `hl-debug run EXPORT`) first")
        order = request.args.get("order") or cls.order
        if order is not None and order not in cls.table.orders:
            abort(400, f"unknown order {order!r} for {cls.name}; valid: {', '.join(cls.table.orders)}")
        equals: dict[str, Any] = {}
        for flag in cls.flags:
            if request.args.get(flag.name) == "1":
                equals.update(flag.equals)
        limit, offset = _int_arg("limit", 50, hi=5000), _int_arg("offset", 0, hi=10**9)
        body.update({"order": order, "total": store.table_count(cls.table, equals=equals or None),
                     "offset": offset,
                     "rows": store.table_rows(cls.table, order=order, equals=equals or None, limit=limit,
                                              offset=offset)})
    if cls.report_name is not None:
        body["report"] = live_report(store, cls.report_name)
    return jsonify(body)
