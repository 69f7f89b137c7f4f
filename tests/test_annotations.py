"""Review decisions: validation, effective labels, the corrected export, the CLI commands."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.errors import AnnotationError, MissingFieldError, NotFoundError
from hl_debug.steps.ingest import ingest, read_export
from hl_debug.steps.review import ACTIONS, corrected_records, record_decision
from hl_debug.storage import Store
from tests.webapp_fixtures import PLANTED_ERROR_ID, fill_synthetic


@pytest.fixture
def web_store(store, tiny_export_path):
    return fill_synthetic(store, tiny_export_path)


def test_accept_takes_the_suggestion_and_keeps_the_original(web_store):
    row = record_decision(web_store, PLANTED_ERROR_ID, "accept")
    assert row["label"] == "chat_settings" and row["previous_label"] == "bill_question"
    assert web_store.effective_label(PLANTED_ERROR_ID) == "chat_settings"
    # the export's label is never overwritten
    assert web_store.get_utterance(PLANTED_ERROR_ID)["intent"] == "bill_question"


def test_latest_labelling_decision_wins_and_skip_changes_nothing(web_store):
    record_decision(web_store, 1000, "relabel", "bill_question")
    record_decision(web_store, 1000, "skip")
    assert web_store.effective_label(1000) == "bill_question"
    record_decision(web_store, 1000, "relabel", "card_issue")
    assert web_store.effective_label(1000) == "card_issue"
    actions = [a["action"] for a in web_store.annotations(1000)]
    assert actions == ["relabel", "skip", "relabel"]  # append-only history


def test_keep_confirms_the_current_label(web_store):
    row = record_decision(web_store, 1001, "keep")
    assert row["label"] == row["previous_label"] == "card_issue"


def test_string_id_is_accepted(web_store):
    assert record_decision(web_store, "1019", "relabel", "card_issue")["utterance_id"] == 1019


@pytest.mark.parametrize(
    ("uid", "action", "label", "error", "match"),
    [
        (None, "skip", None, MissingFieldError, "missing field 'id'"),
        (1000, None, None, MissingFieldError, "missing field 'action'"),
        (1000, "relabel", None, MissingFieldError, "missing field 'label'"),
        ("abc", "skip", None, AnnotationError, "field 'id' must be an integer"),
        (True, "skip", None, AnnotationError, "field 'id' must be an integer"),
        (1000, "delete", None, AnnotationError, "unknown action 'delete'; valid: relabel, accept, keep, skip"),
        (1000, "relabel", "no_such_intent", AnnotationError, "unknown label 'no_such_intent'; valid: bill_question"),
        (1000, "relabel", 3, AnnotationError, "field 'label' must be a string"),
        (PLANTED_ERROR_ID, "accept", "card_issue", AnnotationError, "is not the suggestion 'chat_settings'"),
        (1019, "keep", None, AnnotationError, "has no label to keep"),
        (999999, "skip", None, NotFoundError, "no utterance with id 999999"),
    ],
)
def test_bad_decisions_are_refused_with_a_clear_message(web_store, uid, action, label, error, match):
    with pytest.raises(error, match=match):
        record_decision(web_store, uid, action, label)
    assert web_store.annotations() == []


def test_accept_without_a_suggestion_is_refused(store, tiny_export_path):
    fill_synthetic(store, tiny_export_path, with_analysis=False)
    with pytest.raises(AnnotationError, match="no suggested label"):
        record_decision(store, 1000, "accept")


def test_actions_are_the_documented_ones():
    assert ACTIONS == ("relabel", "accept", "keep", "skip", "out_of_scope")


def test_corrected_export_applies_decisions_in_platform_format(web_store, tiny_export_path, tiny_records, tmp_path):
    record_decision(web_store, PLANTED_ERROR_ID, "accept")
    record_decision(web_store, 1019, "relabel", "card_issue")
    record_decision(web_store, 1020, "skip")
    out = corrected_records(web_store, new_usage="validation")
    assert [r["id"] for r in out] == [r["id"] for r in tiny_records]  # same records, same order
    assert all(set(r) == set(o) for r, o in zip(out, tiny_records))  # same fields
    by_id = {r["id"]: r for r in out}
    assert json.loads(by_id[PLANTED_ERROR_ID]["data"])["intent"] == "chat_settings"
    assert by_id[1019]["complete"] is True and by_id[1019]["usage"] == "validation"
    assert json.loads(by_id[1019]["data"]) == {"text": "is my visa card blocked", "intent": "card_issue"}
    assert by_id[1020] == next(r for r in tiny_records if r["id"] == 1020)  # skipped: untouched
    unchanged = [r for r in out if r["id"] not in (PLANTED_ERROR_ID, 1019)]
    assert unchanged == [r for r in tiny_records if r["id"] not in (PLANTED_ERROR_ID, 1019)]
    # the corrected export is a valid export: it ingests into a fresh database
    path = tmp_path / "corrected.json"
    path.write_text(json.dumps(out), encoding="utf-8")
    fresh = Store(tmp_path / "fresh.db")
    ingest(fresh, path)
    assert fresh.get_utterance(1019)["intent"] == "card_issue"
    assert fresh.get_utterance(PLANTED_ERROR_ID)["intent"] == "chat_settings"
    fresh.close()


def test_corrected_export_rejects_unknown_usage(web_store):
    with pytest.raises(AnnotationError, match="unknown usage 'prod'"):
        corrected_records(web_store, new_usage="prod")


def _invoke(db_path, *args):
    return CliRunner().invoke(cli, ["--db", str(db_path), *map(str, args)], obj={})


def test_cli_export_corrected_and_annotations(web_store, db_path, tmp_path):
    record_decision(web_store, PLANTED_ERROR_ID, "accept")
    record_decision(web_store, 1021, "relabel", "chat_settings")
    out = tmp_path / "corrected.json"
    r = _invoke(db_path, "export", "corrected", "-o", out)
    assert r.exit_code == 0, r.output
    records = read_export(out)  # readable by the same reader as a platform export
    assert json.loads(next(x for x in records if x["id"] == 1021)["data"])["intent"] == "chat_settings"
    r = _invoke(db_path, "export", "corrected", "--format", "csv")
    assert r.exit_code == 0 and r.output.splitlines()[0] == "id,project_id,complete,usage,score,data"
    r = _invoke(db_path, "export", "annotations", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [(x["utterance_id"], x["action"], x["label"]) for x in rows] == [
        (PLANTED_ERROR_ID, "accept", "chat_settings"), (1021, "relabel", "chat_settings")]
    assert rows[0]["original_label"] == "bill_question"


def test_cli_serve_without_database_says_what_to_run(tmp_path):
    r = _invoke(tmp_path / "missing.db", "serve")
    assert r.exit_code == 1 and "hl-debug ingest" in r.output and "Traceback" not in r.output


def test_cli_serve_starts_the_app_on_the_given_host_and_port(web_store, db_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("waitress.serve", lambda app, **kw: seen.update(kw, db=app.config["DB"]))  # serve's default
    r = _invoke(db_path, "serve", "--port", "5123")
    assert r.exit_code == 0, r.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 5123 and seen["db"] == str(db_path)


def test_corrected_export_of_the_real_export_round_trips(store, real_export, tmp_path):
    """On the real export: untouched records come back byte-for-byte equal, decided ones
    carry the new label, and the file ingests again."""
    ingest(store, real_export)
    original = read_export(real_export)
    unannotated = next(r for r in original if not r["complete"])
    annotated = next(r for r in original if r["complete"])
    other = next(i for i in store.intents() if i != json.loads(annotated["data"])["intent"])
    record_decision(store, annotated["id"], "relabel", other)
    record_decision(store, unannotated["id"], "relabel", other)
    out = corrected_records(store)
    assert len(out) == len(original) == 2327
    changed = [k for k, (a, b) in enumerate(zip(out, original)) if a != b]
    assert sorted(out[k]["id"] for k in changed) == sorted([annotated["id"], unannotated["id"]])
    path = tmp_path / "corrected.json"
    path.write_text(json.dumps(out), encoding="utf-8")
    fresh = Store(tmp_path / "fresh.db")
    ingest(fresh, path)
    assert fresh.stats()["n_unannotated"] == 192
    assert fresh.get_utterance(annotated["id"])["intent"] == other
    fresh.close()
