"""Reading and validating exports, and writing them all-or-nothing."""

from __future__ import annotations

import copy
import io
import json
import sqlite3
import zipfile

import pytest

from hl_debug.errors import ExportError, StoreError, ValidationError
from hl_debug.steps.ingest import ingest, read_export, validate


def _problems(records):
    rows, problems = validate(records)
    return problems


def _one(records, index: int = 0):
    problems = _problems(records)
    assert problems, "expected a validation problem"
    return problems


# -- reading ----------------------------------------------------------------------------


def test_reads_json_and_zip_alike(tiny_export_path, tmp_path, tiny_records):
    zpath = tmp_path / "export.json.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(tiny_export_path, "export.json")
    assert read_export(tiny_export_path) == tiny_records
    assert read_export(zpath) == tiny_records


def test_zip_detected_by_content_not_name(tiny_export_path, tmp_path, tiny_records):
    path = tmp_path / "export.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(tiny_export_path, "x.json")
    assert read_export(path) == tiny_records


def test_truncated_zip(tiny_export_path, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(tiny_export_path, "export.json")
    path = tmp_path / "cut.json.zip"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ExportError, match="truncated"):
        read_export(path)


def test_zip_without_json(tmp_path):
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ExportError, match="no .json file.*readme.txt"):
        read_export(path)


def test_zip_with_two_json_files(tmp_path):
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.json", "[]")
        zf.writestr("b.json", "[]")
    with pytest.raises(ExportError, match="2 JSON files"):
        read_export(path)


def test_non_utf8_bytes(write_export):
    path = write_export(b'[{"id": 1, "data": "caf\xe9"}]')
    with pytest.raises(ExportError, match=r"not UTF-8.*0xe9 at offset 23"):
        read_export(path)


def test_top_level_object(write_export):
    path = write_export({"records": [{"id": 1}]})
    with pytest.raises(ExportError, match="expected a JSON array.*got a JSON object") as exc:
        read_export(path)
    assert "'records'" in exc.value.hint


@pytest.mark.parametrize("content", [b"", b"   \n", b"[]"])
def test_empty_file(write_export, content):
    with pytest.raises(ExportError, match="empty"):
        read_export(write_export(content))


def test_invalid_json_names_line(write_export):
    path = write_export(b'[\n{"id": 1,\n')
    with pytest.raises(ExportError, match="not valid JSON.*line 3"):
        read_export(path)


def test_missing_file(tmp_path):
    with pytest.raises(ExportError, match="not found"):
        read_export(tmp_path / "nope.json")


# -- validation rules -------------------------------------------------------------------


def test_tiny_export_is_valid(tiny_records):
    rows, problems = validate(tiny_records)
    assert problems == []
    assert len(rows) == 24
    unannotated = [r for r in rows if not r["complete"]]
    assert len(unannotated) == 5 and all(r["intent"] is None for r in unannotated)
    assert rows[0]["text"] == "my card got stuck in the atm" and rows[0]["intent"] == "card_issue"
    assert rows[0]["position"] == 0 and rows[5]["position"] == 5


def test_data_may_be_an_object(tiny_records):
    rec = copy.deepcopy(tiny_records[0])
    rec["data"] = json.loads(rec["data"])
    rows, problems = validate([rec])
    assert problems == [] and rows[0]["text"] == "my card got stuck in the atm"


def _mutate(tiny_records, index, **changes):
    recs = copy.deepcopy(tiny_records)
    for key, value in changes.items():
        if key == "data_obj":
            recs[index]["data"] = json.dumps(value)
        elif value is _DELETE:
            del recs[index][key]
        else:
            recs[index][key] = value
    return recs


_DELETE = object()


@pytest.mark.parametrize(
    "changes, field, expected",
    [
        ({"id": "1003"}, "id", "an integer"),
        ({"id": True}, "id", "an integer"),
        ({"id": _DELETE}, "id", "missing"),
        ({"project_id": "seven"}, "project_id", "an integer"),
        ({"complete": "yes"}, "complete", "true or false"),
        ({"usage": "train"}, "usage", "one of training, validation, testing or null"),
        ({"usage": None}, "usage", "because complete is true"),
        ({"score": "high"}, "score", "a finite number"),
        ({"score": None}, "score", "a finite number"),
        ({"score": _DELETE}, "score", "missing"),
        ({"data": "{not json"}, "data", "a JSON string holding an object"),
        ({"data": 12}, "data", "a JSON object"),
        ({"data": "[1, 2]"}, "data", "a JSON object"),
        ({"data_obj": {"intent": "card_issue"}}, "data.text", "a non-empty string"),
        ({"data_obj": {"text": "   ", "intent": "card_issue"}}, "data.text", "a non-empty string"),
        ({"data_obj": {"text": 5, "intent": "card_issue"}}, "data.text", "a non-empty string"),
        ({"data_obj": {"text": "hi"}}, "data.intent", "a string"),
        ({"data_obj": {"text": "hi", "intent": None}}, "data.intent", "a string"),
        ({"data_obj": {"text": "hi", "intent": ""}}, "data.intent", "because complete is true"),
    ],
)
def test_each_rule_names_record_and_field(tiny_records, changes, field, expected):
    recs = _mutate(tiny_records, 3, **changes)
    problems = _problems(recs)
    assert len(problems) >= 1
    p = next(p for p in problems if p.field == field)
    assert p.index == 3
    assert expected in p.expected
    text = str(p)
    assert "record #3" in text and f"'{field}'" in text
    if changes.get("id", None) is None and "id" not in changes:
        assert "id=1003" in text


def test_unannotated_row_must_have_empty_intent(tiny_records):
    recs = _mutate(tiny_records, 20, data_obj={"text": "how do i pay", "intent": "bill_question"})
    (p,) = _problems(recs)
    assert p.field == "data.intent" and "because complete is false" in p.expected and p.record_id == 1020


def test_duplicate_ids(tiny_records):
    recs = copy.deepcopy(tiny_records)
    recs[7]["id"] = recs[2]["id"]
    (p,) = _problems(recs)
    assert p.index == 7 and p.field == "id" and "record #2 has the same id" in p.expected


def test_record_not_an_object(tiny_records):
    recs = copy.deepcopy(tiny_records) + ["oops"]
    (p,) = _problems(recs)
    assert p.index == 24 and "a JSON object" in p.expected


def test_all_problems_are_collected(tiny_records):
    recs = copy.deepcopy(tiny_records)
    recs[1]["score"] = "x"
    recs[4]["usage"] = "prod"
    recs[9]["complete"] = 1
    problems = _problems(recs)
    assert [p.index for p in problems] == [1, 4, 9]


# -- writing ----------------------------------------------------------------------------


def test_ingest_writes_and_reingest_is_noop(store, tiny_export_path):
    counts = ingest(store, tiny_export_path)
    assert (counts["added"], counts["changed"], counts["unchanged"]) == (24, 0, 0)
    again = ingest(store, tiny_export_path)
    assert (again["added"], again["changed"], again["unchanged"]) == (0, 0, 24)
    assert store.count_utterances() == 24
    assert [r["status"] for r in store.runs()] == ["ok", "ok"]


def test_newer_export_updates_changed_rows(store, tiny_records, write_export):
    ingest(store, write_export(tiny_records))
    newer = copy.deepcopy(tiny_records)
    newer[20]["complete"] = True
    newer[20]["usage"] = "training"
    newer[20]["data"] = json.dumps({"text": "how do i pay the cable bill", "intent": "bill_question"})
    newer.append({**newer[0], "id": 5000, "data": json.dumps({"text": "a new one", "intent": "card_issue"})})
    counts = ingest(store, write_export(newer, "newer.json"))
    assert (counts["added"], counts["changed"], counts["unchanged"]) == (1, 1, 23)
    row = store.get_utterance(1020)
    assert row["intent"] == "bill_question" and row["usage"] == "training" and row["complete"] == 1


def test_rows_missing_from_newer_export_are_kept_and_counted(store, tiny_records, write_export):
    ingest(store, write_export(tiny_records))
    counts = ingest(store, write_export(tiny_records[:-2], "smaller.json"))
    assert counts["not_in_export"] == 2 and store.count_utterances() == 24


def test_invalid_export_leaves_database_untouched(store, db_path, tiny_records, write_export, dump):
    ingest(store, write_export(tiny_records))
    before = dump(db_path)
    bad = copy.deepcopy(tiny_records)
    bad[0]["data"] = json.dumps({"text": "changed text", "intent": "card_issue"})  # a valid change ...
    bad[5]["usage"] = "nope"  # ... and an invalid one: nothing may be written
    with pytest.raises(ValidationError) as exc:
        ingest(store, write_export(bad, "bad.json"))
    assert "record #5 (id=1005): field 'usage'" in str(exc.value)
    assert dump(db_path) == before


def test_validation_error_caps_listing(tiny_records):
    recs = [dict(r, score="x") for r in tiny_records * 3]
    for i, r in enumerate(recs):
        r["id"] = i
    from hl_debug.steps.ingest import MAX_PROBLEMS

    rows, problems = validate(recs)
    err = ValidationError(problems[:MAX_PROBLEMS], total=len(problems), cap=10)
    assert "72 invalid" in str(err) and "and 62 more" in str(err)


def test_original_record_is_kept_verbatim(tiny_store, tiny_records):
    row = tiny_store.get_utterance(1000)
    assert json.loads(row["raw"]) == tiny_records[0]


# -- hostile input (issue 15): one message naming record and field, nothing written -------


def _cli_ingest(db_path, export_path):
    from click.testing import CliRunner

    from hl_debug.cli import cli

    return CliRunner().invoke(cli, ["--db", str(db_path), "ingest", str(export_path)], obj={})


def _assert_refused(result, *needles):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for needle in needles:
        assert needle in result.output, result.output


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    "changes, needles",
    [
        ({"data": None}, ["record #3 (id=1003)", "field 'data'"]),
        ({"data_obj": {"text": "a\ud800b", "intent": "card_issue"}}, ["record #3 (id=1003)", "field 'data.text'",
                                                                      "surrogate"]),
        ({"data_obj": {"text": "hi", "intent": "card\udfff"}}, ["record #3", "field 'data.intent'"]),
        ({"extra": "\ud800"}, ["record #3 (id=1003)", "field 'extra'", "surrogate"]),
        ({"extra": {"deeper": ["ok", "\udc80"]}}, ["record #3", "field 'extra.deeper[1]'"]),
        ({"id": 10**20}, ["record #3", "field 'id'", "100000000000000000000"]),
        ({"id": -5}, ["record #3", "field 'id'", "non-negative"]),
        ({"id": 2**53}, ["record #3", "field 'id'"]),
        ({"project_id": -(10**20)}, ["record #3 (id=1003)", "field 'project_id'"]),
        ({"score": 10**400}, ["record #3 (id=1003)", "field 'score'"]),
        ({"data": json.dumps({"text": "hi", "intent": "card_issue", "x": 10**20})}, []),  # an extra value: kept
    ],
)
def test_hostile_values_are_named_and_nothing_is_written(tiny_store, db_path, tiny_records, write_export, dump,
                                                         changes, needles):
    recs = _mutate(tiny_records, 3, **changes)
    tiny_store.close()  # WAL checkpointed: the file alone is the database
    before = db_path.read_bytes()
    result = _cli_ingest(db_path, write_export(recs, "hostile.json"))
    if not needles:  # accepted: a big integer inside data is only kept verbatim
        assert result.exit_code == 0, result.output
        return
    _assert_refused(result, *needles)
    assert db_path.read_bytes() == before


def test_data_null_is_refused(tiny_records):
    (p,) = _problems(_mutate(tiny_records, 3, data=None))
    assert p.field == "data" and "a JSON object" in p.expected


def test_json_nested_200000_deep_is_one_message(tmp_path, write_export):
    path = write_export(b"[" * 200_000 + b"]" * 200_000, "deep.json")
    result = _cli_ingest(tmp_path / "new.db", path)
    _assert_refused(result, "nested", "record #0")
    assert _files(tmp_path) == ["deep.json"]


def test_deep_nesting_inside_data_names_the_field(tiny_records, write_export, tmp_path):
    recs = _mutate(tiny_records, 3, data='{"text": "hi", "intent": "card_issue", "x": ' + "[" * 100_000
                   + "]" * 100_000 + "}")
    result = _cli_ingest(tmp_path / "new.db", write_export(recs, "deep.json"))
    _assert_refused(result, "record #3 (id=1003)", "field 'data'", "nested")


def test_huge_integer_literal_is_one_message(tmp_path, write_export):
    path = write_export(b'[{"id": ' + b"9" * 5000 + b"}]", "digits.json")
    result = _cli_ingest(tmp_path / "new.db", path)
    _assert_refused(result, "digits")


def test_rejected_first_ingest_leaves_no_file(tmp_path, tiny_records, write_export):
    bad = _mutate(tiny_records, 2, usage="prod")
    path = write_export(bad, "bad.json")
    result = _cli_ingest(tmp_path / "sub" / "new.db", path)
    _assert_refused(result, "record #2 (id=1002): field 'usage'")
    assert _files(tmp_path) == ["bad.json"]


def test_failure_while_writing_a_new_database_removes_it(tmp_path, tiny_export_path, monkeypatch):
    from hl_debug.storage import Store

    def broken(self, rows):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "upsert_utterances", broken)
    result = _cli_ingest(tmp_path / "new.db", tiny_export_path)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert _files(tmp_path) == []


def test_a_failed_write_leaves_no_run_row(tiny_store, db_path, tiny_export_path, monkeypatch):
    from hl_debug.storage import Store

    tiny_store.close()
    before = db_path.read_bytes()
    tiny_store = Store(db_path)
    runs = tiny_store.runs()

    def broken(self, rows):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "upsert_utterances", broken)
    with pytest.raises(StoreError, match="disk I/O error"):
        ingest(tiny_store, tiny_export_path)
    assert tiny_store.runs() == runs
    tiny_store.close()
    assert db_path.read_bytes() == before


def test_zip_member_size_is_capped(tmp_path, monkeypatch):
    import hl_debug.steps.ingest as ingest_module

    path = tmp_path / "bomb.json.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("export.json", "[" + " " * 5_000_000 + "]")
    monkeypatch.setattr(ingest_module, "MAX_UNZIPPED_BYTES", 1_000_000)
    with pytest.raises(ExportError, match="more than 1,000,000 bytes") as exc:
        read_export(path)
    assert "unzip" in exc.value.hint


def test_zip_member_that_lies_about_its_size_is_capped(tmp_path, monkeypatch):
    import hl_debug.steps.ingest as ingest_module

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("export.json", "[" + " " * 3_000_000 + "]")
    raw = bytearray(buf.getvalue())
    # patch the uncompressed size in the local and the central header to 1,000 bytes
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        real = zf.infolist()[0].file_size
    old = real.to_bytes(4, "little")
    raw = bytes(raw).replace(old, (1000).to_bytes(4, "little"))
    path = tmp_path / "liar.zip"
    path.write_bytes(raw)
    monkeypatch.setattr(ingest_module, "MAX_UNZIPPED_BYTES", 1_000_000)
    with pytest.raises(ExportError):
        read_export(path)
