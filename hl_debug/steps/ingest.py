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
import zipfile
from pathlib import Path
from typing import Any, cast

from hl_debug.domain import SPLITS
from hl_debug.errors import ExportError, Problem, ValidationError
from hl_debug.storage import Store, hash_json, text_hash

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("id", "project_id", "complete", "usage", "score", "data")
MAX_PROBLEMS = 50


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
        return zf.read(jsons[0]), f"{path}:{jsons[0].filename}"
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise ExportError(
            f"{path} is not a readable zip archive ({exc}); it may be truncated",
            hint="Download the export again, or pass the unzipped .json file.",
        ) from exc
    except (OSError, ValueError) as exc:  # zlib errors in a damaged member
        raise ExportError(f"{path} is damaged: {exc}", hint="Download the export again.") from exc


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


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
            elif cast(int, rid) in first_index:
                problem("id", f"a unique id (record #{first_index[cast(int, rid)]} has the same id)", rid)
            else:
                first_index[cast(int, rid)] = index
        if "project_id" in rec and not _is_int(rec["project_id"]):
            problem("project_id", "an integer", rec["project_id"])
        complete = rec.get("complete")
        if "complete" in rec and not isinstance(complete, bool):
            problem("complete", "true or false", complete)
        usage = rec.get("usage")
        if "usage" in rec and usage is not None and usage not in SPLITS:
            problem("usage", "one of training, validation, testing or null", usage)
        if "score" in rec and not _is_number(rec["score"]):
            problem("score", "a finite number (entropy of the model's softmax)", rec["score"])

        text = intent = None
        if "data" in rec:
            data = rec["data"]
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except json.JSONDecodeError as exc:
                    problem("data", f"a JSON string holding an object ({exc.msg})", rec["data"])
                    data = None
            if data is not None and not isinstance(data, dict):
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
            "raw": json.dumps(rec, ensure_ascii=False),
        }
        row["row_hash"] = hash_json({k: row[k] for k in ("project_id", "text", "intent", "usage", "complete", "score", "raw")})
        rows.append(row)
    return rows, problems


def ingest(store: Store, path: str | Path) -> dict[str, Any]:
    """Validate the export at ``path`` and upsert it into ``store``.

    All-or-nothing: on any invalid record a :class:`ValidationError` listing every
    problem is raised before the database is touched. Returns counts ``n_records``,
    ``added``, ``changed``, ``unchanged``, ``not_in_export``.
    """
    records = read_export(path)
    rows, problems = validate(records)
    if problems:
        raise ValidationError(problems[:MAX_PROBLEMS], total=len(problems), cap=MAX_PROBLEMS)
    params = {"export": str(Path(path).resolve()), "n_records": len(rows)}
    with store.run("ingest", parameters=params, inputs_hash=hash_json([r["row_hash"] for r in rows])) as counts:
        counts.update(store.upsert_utterances(rows))
        counts["n_records"] = len(rows)
    if counts["not_in_export"]:
        log.warning("%d utterance(s) in the database are not in this export; they were kept", counts["not_in_export"])
    return counts
