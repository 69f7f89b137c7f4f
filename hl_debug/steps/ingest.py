"""Read and validate a platform export, then write it to the store in one transaction.

The export is a JSON array of records ``{id, project_id, complete, usage, score, data}``
where ``data`` is a JSON *string* (or an object) holding ``text`` and ``intent``. It may
come zipped (one JSON member). Every record is validated before anything is written: all
problems are collected and reported together, and the database is left untouched.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import zipfile
from pathlib import Path
from typing import Any, cast

from hl_debug.domain import MAX_ID, SPLITS
from hl_debug.errors import ExportError, Problem, ValidationError
from hl_debug.storage import Store, hash_json, text_hash

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("id", "project_id", "complete", "usage", "score", "data")
MAX_PROBLEMS = 50
#: SQLite's INTEGER range (other integer columns: ``project_id``).
INT64 = (-(2**63), 2**63 - 1)
#: Deepest nesting of any value in a record (the platform's records are 2 levels deep).
MAX_NESTING = 100
#: Largest decompressed JSON member of a zipped export (a zip bomb stops here).
MAX_UNZIPPED_BYTES = 2 << 30


def read_export(path: str | Path) -> list[Any]:
    """Load the export at ``path`` (``.json`` or a zip holding one JSON array).

    The format is detected from the bytes, not the file name. Raises
    :class:`ExportError` for anything that is not a non-empty JSON array.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"export file not found: {path}")
    if path.is_dir():
        raise ExportError(f"{path} is a folder, not an export file")
    raw = path.read_bytes()
    name = str(path)
    if not raw.strip():
        raise ExportError(f"{path} is empty")
    if raw[:2] == b"PK" or path.suffix.lower() == ".zip":
        raw, name = _unzip(path, raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExportError(
            f"{name} is not UTF-8 text: invalid byte 0x{raw[exc.start]:02x} at offset {exc.start}",
            hint="Re-export the data from the platform as UTF-8 JSON.",
        ) from exc
    if not text.strip():
        raise ExportError(f"{name} is empty")
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            hint="The file may be truncated; download the export again.",
        ) from exc
    except RecursionError as exc:
        raise ExportError(f"{name}: {_deepest(text)}", hint="No export record is nested like that; "
                          "re-export the data from the platform.") from exc
    except ValueError as exc:  # an integer literal longer than Python's str-to-int limit
        raise ExportError(f"{name} is not a usable export: {exc}",
                          hint="An integer with thousands of digits is no id or score; re-export the data.") from exc
    if not isinstance(records, list):
        kind = type(records).__name__.replace("dict", "object").replace("str", "string")
        hint = "The export must be a JSON array of records: [{\"id\": ..., \"data\": ...}, ...]."
        if isinstance(records, dict):
            lists = [k for k, v in records.items() if isinstance(v, list)]
            if lists:
                hint += f" This object holds a list under {lists[0]!r}; export that list alone."
        raise ExportError(f"{name}: expected a JSON array of records at the top level, got a JSON {kind}", hint=hint)
    if not records:
        raise ExportError(f"{name} holds an empty array: no records to ingest")
    return records


def _unzip(path: Path, raw: bytes) -> tuple[bytes, str]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        jsons = [m for m in members if m.filename.lower().endswith(".json")]
        if not jsons:
            listed = ", ".join(m.filename for m in members[:5]) or "nothing"
            raise ExportError(f"{path} holds no .json file (it holds {listed})")
        if len(jsons) > 1:
            raise ExportError(
                f"{path} holds {len(jsons)} JSON files ({', '.join(m.filename for m in jsons[:5])}); expected one",
                hint="Zip the single export file, or unzip it and pass the .json you mean.",
            )
        return _read_member(zf, jsons[0], path), f"{path}:{jsons[0].filename}"
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise ExportError(
            f"{path} is not a readable zip archive ({exc}); it may be truncated",
            hint="Download the export again, or pass the unzipped .json file.",
        ) from exc
    except (OSError, ValueError) as exc:  # zlib errors in a damaged member
        raise ExportError(f"{path} is damaged: {exc}", hint="Download the export again.") from exc


def _read_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> bytes:
    """The member's bytes, refusing more than :data:`MAX_UNZIPPED_BYTES` (whatever its header
    claims: the size is counted while decompressing)."""
    too_big = ExportError(f"{path}:{member.filename} decompresses to more than {MAX_UNZIPPED_BYTES:,} bytes",
                          hint="If the export really is that large, unzip it yourself and pass the .json file.")
    if member.file_size > MAX_UNZIPPED_BYTES:
        raise too_big
    out = bytearray()
    with zf.open(member) as f:
        while chunk := f.read(1 << 20):
            out += chunk
            if len(out) > MAX_UNZIPPED_BYTES:
                raise too_big
    return bytes(out)


def _deepest(text: str) -> str:
    """Where ``text`` (JSON the parser gave up on) is nested deepest: the record and position."""
    depth = best = record = best_record = best_at = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', text):
        ch = m.group()
        if ch in "[{":
            depth += 1
            if depth > best:
                best, best_at, best_record = depth, m.start(), record
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 1:
            record += 1
    line = text.count("\n", 0, best_at) + 1
    column = best_at - (text.rfind("\n", 0, best_at) + 1) + 1
    return (f"record #{best_record} is nested {best:,} levels deep (line {line}, column {column}); "
            f"a record may be nested at most {MAX_NESTING} levels deep")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _show(v: Any) -> str:
    try:
        s = json.dumps(v, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        s = f"a deeply nested {type(v).__name__}"
    s = _escape(s)
    return s if len(s) <= 60 else s[:57] + "..."


def _escape(s: str) -> str:
    """``s`` printable in any UTF-8 terminal: a lone surrogate becomes the text ``\\ud800``."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _fits(v: int, lo: int, hi: int) -> bool:
    return lo <= v <= hi


def _finite(v: Any) -> bool:
    """A JSON number a float holds: not a bool, not NaN or infinite, not an int beyond 1.8e308."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _plain(data: str) -> bool:
    """Whether the JSON text ``data`` surely parses to storable values: no ``\\ud800``-like
    escape (a surrogate, lone or paired) and fewer brackets than :data:`MAX_NESTING`."""
    return data.count("[") + data.count("{") <= MAX_NESTING and not _SURROGATE_ESCAPE.search(data)


def _storable(value: Any, path: str) -> tuple[str | None, tuple[str, str, Any] | None]:
    """``(value's JSON text, None)`` when it can be stored, else ``(None, the problem)`` (see
    :func:`_unusable`). Fast path: text that encodes as UTF-8 and holds fewer brackets than
    :data:`MAX_NESTING` needs no walk."""
    try:
        text = json.dumps(value, ensure_ascii=False)
        text.encode("utf-8")
    except (UnicodeEncodeError, RecursionError, ValueError):
        return None, _unusable(value, path) or (path or "(record)", "a value JSON can hold", ...)
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return text, None
    found = _unusable(value, path)
    return (None, found) if found else (text, None)


def _unusable(value: Any, path: str, depth: int = 0) -> tuple[str, str, Any] | None:
    """The first value under ``value`` that cannot be stored: ``(field path, what was expected,
    the value)``, else None. Lone surrogates (``"\\ud800"``: valid JSON, not encodable as UTF-8)
    in a string or a key, and nesting deeper than :data:`MAX_NESTING`. Iterative: the depth is
    bounded by the parser, not by Python's stack."""
    stack = [(value, path, depth)]
    while stack:
        v, where, d = stack.pop()
        if d > MAX_NESTING:
            return where, f"a value nested at most {MAX_NESTING} levels deep", ...
        if isinstance(v, str):
            if not v.isascii() and not _encodable(v):
                return where, "text without lone surrogates (e.g. \\ud800: not encodable as UTF-8)", v
        elif isinstance(v, dict):
            for k in reversed(list(v)):
                sub = f"{where}.{_escape(str(k))}" if where else _escape(str(k))
                if not _encodable(str(k)):
                    return sub, "a field name without lone surrogates", ...
                stack.append((v[k], sub, d + 1))
        elif isinstance(v, list):
            stack.extend((item, f"{where}[{i}]", d + 1) for i, item in reversed(list(enumerate(v))))
    return None


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(records: list[Any]) -> tuple[list[dict], list[Problem]]:
    """Validate export records and turn them into utterance rows.

    Returns ``(rows, problems)``; ``rows`` is only meaningful when ``problems`` is empty.
    Each row has the ``utterances`` columns: id, project_id, text, intent (None when
    unannotated), usage, complete, score, text_hash, position, raw, row_hash.
    """
    problems: list[Problem] = []
    rows: list[dict] = []
    first_index: dict[int, int] = {}
    for index, rec in enumerate(records):
        bad = len(problems)

        def problem(field: str, expected: str, got: Any = ..., _i: int = index, _rec: Any = rec) -> None:
            rid = _rec.get("id") if isinstance(_rec, dict) and _is_int(_rec.get("id")) else None
            problems.append(Problem(_i, rid, field, expected, "" if got is ... else _show(got)))

        if not isinstance(rec, dict):
            problem("(record)", "a JSON object", rec)
            continue
        for field in REQUIRED_FIELDS:
            if field not in rec:
                problem(field, "the field to be present (it is missing)")
        rid = rec.get("id")
        if "id" in rec:
            if not _is_int(rid):
                problem("id", "an integer", rid)
            elif not _fits(cast(int, rid), 0, MAX_ID):
                problem("id", f"a non-negative integer of at most {MAX_ID} (2**53 - 1, the largest id a browser "
                        "addresses exactly)", rid)
            elif cast(int, rid) in first_index:
                problem("id", f"a unique id (record #{first_index[cast(int, rid)]} has the same id)", rid)
            else:
                first_index[cast(int, rid)] = index
        if "project_id" in rec and not (_is_int(rec["project_id"]) and _fits(rec["project_id"], *INT64)):
            problem("project_id", "an integer between -2**63 and 2**63 - 1", rec["project_id"])
        complete = rec.get("complete")
        if "complete" in rec and not isinstance(complete, bool):
            problem("complete", "true or false", complete)
        usage = rec.get("usage")
        if "usage" in rec and usage is not None and usage not in SPLITS:
            problem("usage", "one of training, validation, testing or null", usage)
        if "score" in rec and not _finite(rec["score"]):
            problem("score", "a finite number (entropy of the model's softmax)", rec["score"])

        text = intent = None
        if "data" in rec:
            data = rec["data"]
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except json.JSONDecodeError as exc:
                    problem("data", f"a JSON string holding an object ({exc.msg})", rec["data"])
                    data = ...
                except RecursionError:
                    problem("data", f"a JSON string holding an object nested at most {MAX_NESTING} levels deep",
                            rec["data"])
                    data = ...
                except ValueError as exc:  # an integer literal beyond Python's digit limit
                    problem("data", f"a JSON string holding an object ({exc})", rec["data"])
                    data = ...
            if data is not ... and not isinstance(data, dict):
                problem("data", 'a JSON object {"text": ..., "intent": ...} (or a string holding one)', rec["data"])
            elif isinstance(data, dict):
                text, intent = data.get("text"), data.get("intent")
                if not isinstance(text, str) or not text.strip():
                    problem("data.text", "a non-empty string", text if "text" in data else ...)
                if not isinstance(intent, str):
                    problem("data.intent", 'a string ("" when unannotated)', intent if "intent" in data else ...)
        if isinstance(complete, bool) and isinstance(intent, str):
            if complete and not intent.strip():
                problem("data.intent", "a non-empty intent, because complete is true", intent)
            if not complete and intent.strip():
                problem("data.intent", 'an empty intent "", because complete is false', intent)
        if complete is True and "usage" in rec and usage is None:
            problem("usage", "training, validation or testing, because complete is true", usage)
        raw = None
        if len(problems) == bad:  # the fields are right: can every value be stored?
            parsed = data if isinstance(rec.get("data"), str) else None
            raw, found = _storable(rec, "")
            if not found and parsed is not None and not _plain(rec["data"]):
                found = _unusable(parsed, "data")
            if found:
                problem(*found)
        if len(problems) > bad:
            continue
        # validated above: text and intent are strings
        text, intent = cast(str, text), cast(str, intent)
        row = {
            "id": rid,
            "project_id": rec["project_id"],
            "text": text,
            "intent": intent.strip() if complete else None,
            "usage": usage,
            "complete": int(cast(bool, complete)),
            "score": float(rec["score"]),
            "text_hash": text_hash(text),
            "position": index,
            "raw": raw,
        }
        row["row_hash"] = hash_json({k: row[k] for k in ("project_id", "text", "intent", "usage", "complete", "score", "raw")})
        rows.append(row)
    return rows, problems


def load(path: str | Path) -> list[dict]:
    """Read and validate the export at ``path`` without touching any database: its utterance
    rows, or :class:`ExportError` / :class:`ValidationError` listing every problem (so a
    caller can refuse an export before it creates a database file)."""
    rows, problems = validate(read_export(path))
    if problems:
        raise ValidationError(problems[:MAX_PROBLEMS], total=len(problems), cap=MAX_PROBLEMS)
    return rows


def ingest(store: Store, path: str | Path, *, rows: list[dict] | None = None) -> dict[str, Any]:
    """Validate the export at ``path`` and upsert it into ``store``.

    All-or-nothing: on any invalid record a :class:`ValidationError` listing every
    problem is raised before the database is touched, and a failure while writing rolls
    back everything, the run record included. ``rows``: the export's rows when the caller
    already :func:`load`-ed them. Returns counts ``n_records``, ``added``, ``changed``,
    ``unchanged``, ``not_in_export``.
    """
    rows = load(path) if rows is None else rows
    params = {"export": str(Path(path).resolve()), "n_records": len(rows)}
    with store.transaction(), store.run("ingest", parameters=params,
                                        inputs_hash=hash_json([r["row_hash"] for r in rows])) as counts:
        counts.update(store.upsert_utterances(rows))
        counts["n_records"] = len(rows)
    if counts["not_in_export"]:
        log.warning("%d utterance(s) in the database are not in this export; they were kept", counts["not_in_export"])
    return counts
