"""``hl-debug ingest`` on arbitrary exports (issue 15): arbitrary JSON values in every field,
any nesting, any unicode (lone surrogates included) and any integer size. It either succeeds
or exits 1 naming the record and the field, never prints a traceback, and on rejection
leaves the database byte-identical — or, for a new path, leaves no file at all."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hl_debug.cli import cli
from tests.property_profiles import examples

TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates included
INTS = st.sampled_from([0, -1, 2**31, 2**53 - 1, 2**53, 2**63 - 1, 2**63, -(2**63) - 1, 10**20, 10**400]) | st.integers()
SCALARS = st.none() | st.booleans() | INTS | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=8)
# what a well-formed record's extra fields hold: any JSON a UTF-8 file can carry
SAFE_TEXT = st.text(max_size=12)
SAFE_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                         | SAFE_TEXT, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SAFE_TEXT, inner,
                                                                                                   max_size=3),
                         max_leaves=8)


class Nested:
    """A value nested ``depth`` lists deep, written as raw JSON text (json.dumps would recurse)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


NESTED = st.integers(1, 3000).map(Nested)
ANY = JSON | NESTED


def _dumps(value) -> str:
    """JSON text of ``value``, Nested values spliced in as raw text."""
    raws: dict[str, str] = {}

    def mark(v):
        if isinstance(v, Nested):
            key = f"__nested_{uuid.uuid4().hex}__"
            raws[f'"{key}"'] = "[" * v.depth + "]" * v.depth
            return key
        if isinstance(v, list):
            return [mark(x) for x in v]
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        return v

    text = json.dumps(mark(value))  # ensure_ascii: a lone surrogate is written as the escape \ud800
    for key, raw in raws.items():
        text = text.replace(key, raw)
    return text


def _data_string(text, intent, extra):
    return _dumps({"text": text, "intent": intent, **extra})


@st.composite
def records(draw):
    """A record with every field right (about half of them), or with some fields anything at all."""
    hostile = draw(st.sampled_from([True, False, False]))

    def field(good):
        return draw(st.one_of(good, good, ANY) if hostile else good)

    complete = field(st.booleans())
    rec = {
        "id": field(st.integers(0, 10**9)),
        "project_id": field(st.just(411) | st.integers(-(2**63), 2**63 - 1)),
        "complete": complete,
        "usage": field(st.sampled_from(["training", "validation", "testing"]) if complete is True else st.none()),
        "score": field(st.floats(0, 5) | st.integers(0, 10)),
    }
    text = field(st.sampled_from(["lost my card", "when is my bill due"]) | (TEXT if hostile else SAFE_TEXT).filter(str.strip))
    intent = field(st.sampled_from(["card_issue"] if complete is True else [""]))
    extra_data = draw(st.dictionaries(TEXT, ANY, max_size=2) if hostile else st.dictionaries(SAFE_TEXT, SAFE_JSON, max_size=2))
    rec["data"] = draw(st.sampled_from(["string", "object", "any"] if hostile else ["string", "object"]))
    if rec["data"] == "string":
        rec["data"] = _Raw(_data_string(text, intent, extra_data))
    elif rec["data"] == "object":
        rec["data"] = {"text": text, "intent": intent, **extra_data}
    else:
        rec["data"] = draw(ANY)
    for name, value in draw(st.dictionaries(TEXT, ANY, max_size=2) if hostile else st.dictionaries(SAFE_TEXT, SAFE_JSON, max_size=2)).items():
        rec.setdefault(name, value)
    for name in draw(st.lists(st.sampled_from(sorted(rec)), max_size=1)) if hostile else ():
        del rec[name]
    return rec


class _Raw(str):
    """A ``data`` string already serialised (it may hold Nested text)."""


def _export_text(recs) -> str:
    parts = []
    for rec in recs:
        if isinstance(rec, dict):
            items = []
            for k, v in rec.items():
                value = json.dumps(str(v)) if isinstance(v, _Raw) else _dumps(v)
                items.append(f"{json.dumps(k)}: {value}")
            parts.append("{" + ", ".join(items) + "}")
        else:
            parts.append(_dumps(rec))
    return "[" + ", ".join(parts) + "]"


EXPORTS = st.lists(records() | records() | records() | ANY, min_size=1, max_size=4)


@pytest.fixture(scope="module")
def base_db(tmp_path_factory):
    """A database holding the tiny export (copied for each example)."""
    from tests.conftest import TINY_EXPORT

    db = tmp_path_factory.mktemp("base") / "hl.db"
    r = CliRunner().invoke(cli, ["--db", str(db), "ingest", str(TINY_EXPORT)], obj={})
    assert r.exit_code == 0, r.output
    return db


def _check(result, *, refused_ok=True) -> bool:
    """True when ingest refused the export; fails the test on a traceback or a vague refusal."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        assert "record #" in result.output, result.output
        assert "field '" in result.output or "nested" in result.output, result.output
    return result.exit_code == 1


@examples(75)
@given(recs=EXPORTS)
def test_ingest_into_a_new_path_succeeds_or_leaves_no_file(tmp_path_factory, recs):
    folder = tmp_path_factory.mktemp("new")
    export = folder / "export.json"
    export.write_text(_export_text(recs), encoding="utf-8")
    db = folder / "sub" / "hl.db"
    refused = _check(CliRunner().invoke(cli, ["--db", str(db), "ingest", str(export)], obj={}))
    if refused:
        assert sorted(p.name for p in folder.iterdir()) == ["export.json"]
    else:
        assert db.exists()
    shutil.rmtree(folder)


@examples(75)
@given(recs=EXPORTS)
def test_ingest_into_an_existing_database_succeeds_or_changes_nothing(tmp_path_factory, base_db, recs):
    folder = tmp_path_factory.mktemp("existing")
    export = folder / "export.json"
    export.write_text(_export_text(recs), encoding="utf-8")
    db = folder / "hl.db"
    shutil.copy(base_db, db)
    before = db.read_bytes()
    refused = _check(CliRunner().invoke(cli, ["--db", str(db), "ingest", str(export)], obj={}))
    if refused:
        assert db.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["export.json", "hl.db"]
    shutil.rmtree(folder)


def test_the_generator_reaches_both_outcomes():
    """The strategies are not so hostile that nothing is ever accepted (which would make the
    properties vacuous), nor so tame that nothing is refused."""
    from hypothesis import find

    from hl_debug.steps.ingest import validate

    def outcome(recs) -> bool | None:
        try:
            return not validate(json.loads(_export_text(recs)))[1]
        except RecursionError:
            return None

    find(EXPORTS, lambda recs: outcome(recs) is True, settings=examples(200))
    find(EXPORTS, lambda recs: outcome(recs) is False, settings=examples(200))
