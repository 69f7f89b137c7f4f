"""Writing tables to CSV or JSON, shared by every ``hl-debug export`` command."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

FORMATS = ("csv", "json")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def write_rows(rows: Iterable[dict], columns: Sequence[str], *, fmt: str = "csv",
               output: str | Path | TextIO | None = None) -> int:
    """Write ``rows`` restricted to ``columns`` as CSV (header first) or a JSON array.

    ``output`` is a path, an open text stream, or None for standard output. Returns the
    number of rows written. A file is written to a temporary name and renamed, so a
    failed export never leaves a half-written file.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    buf = io.StringIO()
    n = 0
    if fmt == "csv":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
            n += 1
    else:
        items = [{c: row.get(c) for c in columns} for row in rows]
        n = len(items)
        json.dump(items, buf, ensure_ascii=False, indent=1)
        buf.write("\n")
    text = buf.getvalue()
    if output is None:
        sys.stdout.write(text)
    elif isinstance(output, (str, Path)):
        path = Path(output)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    else:
        output.write(text)
    return n
