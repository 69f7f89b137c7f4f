"""The inspector's rows as ready JSON, per database state, with the review decisions overlaid.

The inspector asks for rows by id (``/api/utterances?ids=``, a cluster's members, one row):
each request used to run the joined read model (:meth:`Store.inspector_rows`) and encode
its rows — ~15 ms for 200 rows, so 200 reviewers clicking at once queued for seconds. The
rows change at two very different rates, as the map's payload does (``points.py``):

- everything the pipeline writes (text, prediction, map position, every signal's evidence)
  changes only with :meth:`Store.data_version` without reviews: each row is encoded **once**
  per such state, as the bytes of its JSON object minus the review columns;
- the effective ``label`` and the latest ``decision`` change with every review click: they
  come from the small ``annotations`` table (two dicts per review version) and are spliced
  into the row's bytes at request time.

So a request costs a few dict lookups and a ``join``. :meth:`RowCache.warm` encodes every
row in one read (the start-up thread, after the map's payload); rows not encoded yet are
read on demand. At most ``max_rows`` rows are kept (~1 kB each: ~100 MB at 100k rows); a
larger database is not warmed, and rows past the cap are read per request, as before.

The rule for the effective label is the store's (:mod:`hl_debug.storage.reviews`): the label
of the latest labelling decision when it has one, else the original intent. A test checks
that every row equals :meth:`Store.inspector_rows` after any decisions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hl_debug.storage import Evidence, Store

#: The columns that change with review decisions (overlaid per request).
REVIEW_COLUMNS = ("label", "decision")
WARM_CHUNK = 20_000


def encode(value: Any) -> bytes:
    """One JSON value as the API writes it (compact, ASCII: lone surrogates stay escapes)."""
    return json.dumps(value, separators=(",", ":")).encode("ascii")


@dataclass
class _Base:
    """The encoded rows of one pipeline state (a decision re-encodes nothing: a decided row's
    object is the undecided one with its review tail swapped)."""

    version: int
    #: ``id -> (the whole JSON object as an undecided row, the length of its review tail
    #: ``,"label":<intent>,"decision":null}``, the original intent)``
    rows: dict[int, tuple[bytes, int, str | None]] = field(default_factory=dict)
    complete: bool = False  # every utterance of this state is in ``rows``


@dataclass(frozen=True)
class _Overlay:
    """The review columns at one review version."""

    version: int
    labels: dict[int, str | None]  # latest labelling decision's label
    actions: dict[int, str]  # latest decision (skip included)


class RowCache:
    """Inspector rows per database path as JSON bytes (thread-safe: one lock guards the
    swaps; dict reads and writes are atomic)."""

    def __init__(self, *, max_rows: int = 200_000) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._bases: dict[str, _Base] = {}
        self._overlays: dict[str, _Overlay] = {}
        self.encoded = 0  # rows encoded so far (tests read it)

    # -- state -----------------------------------------------------------------------------

    def _base(self, store: Store, version: int) -> _Base:
        with self._lock:
            base = self._bases.get(store.path)
            if base is None or base.version != version:
                base = self._bases[store.path] = _Base(version)
            return base

    def _overlay(self, store: Store, version: int) -> _Overlay:
        overlay = self._overlays.get(store.path)
        if overlay is None or overlay.version != version:
            overlay = _Overlay(version, store.decided_labels(), store.latest_actions())
            with self._lock:
                self._overlays[store.path] = overlay
        return overlay

    @staticmethod
    def _columns(store: Store, evidence: Sequence[Evidence]) -> list[str]:
        return [c for c in store.inspector_columns(tuple(evidence)) if c not in REVIEW_COLUMNS]

    @staticmethod
    def _entry(row: dict) -> tuple[bytes, int, str | None]:
        intent = row.get("intent")
        tail = b',"label":' + encode(intent) + b',"decision":null}'
        return encode(row)[:-1] + tail, len(tail), intent

    def _encode_into(self, base: _Base, rows: list[dict]) -> None:
        room = self.max_rows - len(base.rows)
        for row in rows[:max(room, 0)]:
            base.rows[row["id"]] = self._entry(row)
        self.encoded += min(len(rows), max(room, 0))

    def _fill(self, store: Store, base: _Base, ids: list[int],
              evidence: Sequence[Evidence]) -> dict[int, tuple[bytes, int, str | None]]:
        """Encode the rows of ``ids`` not in ``base`` yet; returns those the cap left out,
        in ``base.rows``' form."""
        missing = [i for i in ids if i not in base.rows]
        if not missing or base.complete:
            return {}
        rows = store.inspector_rows(missing, evidence=evidence, columns=self._columns(store, evidence))
        self._encode_into(base, rows)
        return {r["id"]: self._entry(r) for r in rows if r["id"] not in base.rows}

    # -- reads -----------------------------------------------------------------------------

    def rows(self, store: Store, ids: Sequence[int], evidence: Sequence[Evidence]) -> list[tuple[int, bytes, str | None]]:
        """``(id, JSON object, effective label)`` of the rows of ``ids``, in that order (unknown
        ids left out)."""
        base = self._base(store, store.data_version(reviews=False))
        overlay = self._overlay(store, store.data_version())
        ids = [int(i) for i in ids]
        extra = self._fill(store, base, ids, evidence)
        labels, actions = overlay.labels, overlay.actions
        memo: dict[str | None, bytes] = {}

        def enc(value: str | None) -> bytes:
            if value not in memo:
                memo[value] = encode(value)
            return memo[value]

        out = []
        for i in ids:
            kept = base.rows.get(i) or extra.get(i)
            if kept is None:
                continue
            whole, tail, intent = kept
            if i not in actions:  # undecided: a labelling decision is always some row's latest action too
                out.append((i, whole, intent))
                continue
            label = labels.get(i)
            label = label if label is not None else intent
            out.append((i, b"".join((whole[:-tail], b',"label":', enc(label), b',"decision":', enc(actions[i]), b"}")),
                        label))
        return out

    def warm(self, store: Store, evidence: Sequence[Evidence]) -> int:
        """Encode every row of the current state (up to ``max_rows``); returns how many were
        encoded here. Runs in the app's start-up thread."""
        base = self._base(store, store.data_version(reviews=False))
        if base.complete or store.count_utterances() > self.max_rows:
            return 0  # past the cap rows are encoded as they are asked for: no arbitrary subset read up front
        columns = ["id", *[c for c in self._columns(store, evidence) if c != "id"]]
        data = store.map_columns(columns, evidence=evidence)
        ids = data["id"]
        before = self.encoded
        for start in range(0, len(ids), WARM_CHUNK):
            stop = min(start + WARM_CHUNK, len(ids))
            chunk = [dict(zip(columns, values)) for values in zip(*(data[c][start:stop] for c in columns))]
            self._encode_into(base, [r for r in chunk if r["id"] not in base.rows])
        base.complete = len(base.rows) >= len(ids)
        return self.encoded - before


def array(items: Sequence[bytes]) -> bytes:
    """A JSON array of already-encoded values."""
    return b"[" + b",".join(items) + b"]"
