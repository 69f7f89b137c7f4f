"""Run records (each step run: parameters, versions, inputs hash, timings, counts) and
stored JSON reports."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np


def now() -> str:
    """UTC timestamp in ISO 8601, second precision."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (plus hl-debug and Python)."""
    import platform
    from importlib import metadata

    from hl_debug import __version__

    out = {"hl-debug": __version__, "python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out



#: Reports that are caches of other data (see :meth:`Runs.save_cache`).
CACHE_NAMES = ("web_map_payload",)


class Runs:
    """Store methods for runs and reports (the mixin expects ``self.db``, ``self.transaction()``
    and ``self._bump()``)."""

    db: Any

    if TYPE_CHECKING:  # provided by the composed Store
        def transaction(self) -> Any:
            ...

        def _bump(self) -> None:
            ...


    @contextlib.contextmanager
    def run(self, step: str, *, parameters: dict | None = None, inputs_hash: str | None = None,
            versions: dict | None = None) -> Iterator[dict]:
        """Record one run of ``step``.

        Yields a dict the step fills with counts (``counts["n_embedded"] = ...``); the run
        row is marked ``ok`` with its duration on success, ``failed`` with the error
        otherwise (and the error re-raised).
        """
        counts: dict[str, Any] = {}
        t0 = time.perf_counter()
        with self.transaction():
            run_id = self.db["runs"].insert(
                {
                    "step": step,
                    "status": "running",
                    "parameters": json.dumps(parameters or {}, sort_keys=True, default=str),
                    "versions": json.dumps(versions or package_versions(), sort_keys=True),
                    "inputs_hash": inputs_hash,
                    "started_at": now(),
                }
            ).last_pk
        counts["_run_id"] = run_id
        status, error = "ok", None
        try:
            yield counts
        except BaseException as exc:
            status, error = ("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"), repr(exc)
            raise
        finally:
            counts.pop("_run_id", None)
            with self.transaction():
                self.db["runs"].update(
                    run_id,
                    {
                        "status": status,
                        "error": error,
                        "counts": json.dumps(counts, sort_keys=True, default=str),
                        "finished_at": now(),
                        "duration_s": round(time.perf_counter() - t0, 3),
                    },
                )

    def last_run(self, step: str, *, status: str | None = "ok") -> dict | None:
        sql = "SELECT * FROM runs WHERE step = ?" + (" AND status = ?" if status else "") + " ORDER BY id DESC LIMIT 1"
        rows = list(self.db.query(sql, [step, status] if status else [step]))
        if not rows:
            return None
        row = rows[0]
        for key in ("parameters", "versions", "counts"):
            row[key] = json.loads(row[key]) if row[key] else {}
        return row

    def is_up_to_date(self, step: str, inputs_hash: str) -> bool:
        """True when the last successful run of ``step`` saw the same inputs hash."""
        last = self.last_run(step)
        return bool(last and last["inputs_hash"] == inputs_hash)

    def runs(self, limit: int = 50) -> list[dict]:
        return list(self.db.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", [limit]))


    def save_report(self, name: str, body: Any, *, run_id: int | None = None) -> None:
        """Store JSON ``body`` under ``name`` (replacing it) and bump the data version: views
        show reports. A cache derived from other data (the map payload) uses :meth:`save_cache`."""
        with self.transaction():
            self._put_report(name, body, run_id)
            if name not in CACHE_NAMES:  # LEGACY: callers still saving a cache through save_report
                self._bump()

    def save_cache(self, name: str, body: Any) -> None:
        """Store a cache derived from the data (e.g. the map payload's base) WITHOUT bumping
        the data version, so keeping it never invalidates itself. Read it with :meth:`report`."""
        with self.transaction():
            self._put_report(name, body, None)

    def _put_report(self, name: str, body: Any, run_id: int | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO reports (name, body, run_id, created_at) VALUES (?, ?, ?, ?)",
                        [name, json.dumps(body, default=_json_default), run_id, now()])

    def report(self, name: str) -> Any | None:
        row = self.db.execute("SELECT body FROM reports WHERE name = ?", [name]).fetchone()
        return json.loads(row[0]) if row else None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
