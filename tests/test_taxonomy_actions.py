"""Taxonomy actions (merge / rename / split / revert) on the tiny export: previews that reflect earlier
decisions, one batch per action, originals kept, reverts, typed errors, ``export corrected``."""

from __future__ import annotations

import json

import pytest

from hl_debug.errors import AnnotationError, MissingFieldError, NotFoundError
from hl_debug.steps import taxonomy_actions as ta
from hl_debug.steps.review import corrected_records, record_decision


def counts(store) -> dict[str, int]:
    return store.label_counts()


def test_merge_preview_counts_rows_per_current_label(tiny_store):
    before = counts(tiny_store)
    p = ta.plan_merge(tiny_store, "bill_question", "card_issue")
    assert p["sources"] == ["bill_question"] and p["target"] == "card_issue" and not p["new_intent"]
    assert p["n_rows"] == before["bill_question"] > 0
    assert p["by_label"]["bill_question"]["n"] == before["bill_question"]
    assert p["n_target"] == before["card_issue"]
    assert len(p["by_label"]["bill_question"]["examples"]) == min(ta.N_EXAMPLES, before["bill_question"])
    assert counts(tiny_store) == before  # a preview stores nothing
    assert tiny_store.annotations() == []


def test_preview_reflects_decisions_already_made(tiny_store):
    n_bill = counts(tiny_store)["bill_question"]
    record_decision(tiny_store, 1000, "relabel", "bill_question")  # a card_issue row, now bill_question
    bill_row = next(r["id"] for r in tiny_store.utterance_rows() if r["intent"] == "bill_question")
    record_decision(tiny_store, bill_row, "relabel", "chat_settings")  # and one bill_question row leaves
    p = ta.plan_merge(tiny_store, "bill_question", "card_issue")
    assert p["n_rows"] == n_bill  # +1 -1
    assert p["by_label"]["bill_question"]["n_decided"] == 1
    assert p["by_label"]["bill_question"]["n_original"] == n_bill - 1
    assert 1000 in p["ids"] and bill_row not in p["ids"]


def test_apply_merge_is_one_batch_keeps_originals_and_reaches_export_corrected(tiny_store):
    before = counts(tiny_store)
    originals = {r["id"]: r["intent"] for r in tiny_store.utterance_rows()}
    out = ta.apply(tiny_store, "merge", "bill_question", "card_issue", expected_rows=before["bill_question"],
                   reviewer="ana")
    assert out["batch"].startswith("merge:")
    after = counts(tiny_store)
    assert "bill_question" not in after
    assert after["card_issue"] == before["card_issue"] + before["bill_question"]
    decisions = tiny_store.annotations()
    assert len(decisions) == before["bill_question"]
    assert {d["batch"] for d in decisions} == {out["batch"]} and {d["reviewer"] for d in decisions} == {"ana"}
    assert {d["previous_label"] for d in decisions} == {"bill_question"}
    assert {r["id"]: r["intent"] for r in tiny_store.utterance_rows()} == originals  # originals untouched
    exported = [json.loads(r["data"])["intent"] for r in corrected_records(tiny_store)]
    assert "bill_question" not in exported and exported.count("card_issue") == after["card_issue"]
    [change] = ta.changes(tiny_store)
    assert change["batch"] == out["batch"] and change["n"] == before["bill_question"]
    assert change["labels"] == ["card_issue"] and change["reverted_by"] is None


def test_merge_both_into_a_new_name_and_revert_restores_each_rows_label(tiny_store):
    before = counts(tiny_store)
    record_decision(tiny_store, 1000, "relabel", "bill_question")  # decided before the merge
    labels_before = tiny_store.effective_labels()
    out = ta.apply(tiny_store, "merge", "bill_question", "card_issue", label="money")
    assert out["new_intent"] and out["n_rows"] == before["bill_question"] + before["card_issue"]
    assert counts(tiny_store)["money"] == out["n_rows"]
    rev = ta.revert(tiny_store, out["batch"])
    assert rev["revert_batch"] == f"revert:{out['batch']}" and rev["n_rows"] == out["n_rows"]
    assert tiny_store.effective_labels() == labels_before  # 1000 back to bill_question, not card_issue
    assert ta.changes(tiny_store)[0]["reverted_by"] == rev["revert_batch"]
    with pytest.raises(AnnotationError, match="already reverted"):
        ta.revert(tiny_store, out["batch"])
    assert len(tiny_store.annotations()) == 1 + 2 * out["n_rows"]  # append-only


def test_revert_leaves_rows_decided_again_since(tiny_store):
    out = ta.apply(tiny_store, "rename", "chat_settings", label="assistant_settings")
    moved = out["ids"][0]
    record_decision(tiny_store, moved, "relabel", "card_issue")
    p = ta.plan_revert(tiny_store, out["batch"])
    assert p["n_skipped"] == 1 and p["n_rows"] == out["n_rows"] - 1
    ta.revert(tiny_store, out["batch"])
    assert tiny_store.effective_label(moved) == "card_issue"
    assert "assistant_settings" not in counts(tiny_store)


def test_expected_rows_guards_against_decisions_made_after_the_preview(tiny_store):
    p = ta.plan(tiny_store, "merge", "bill_question", "card_issue")
    record_decision(tiny_store, 1000, "relabel", "bill_question")
    with pytest.raises(AnnotationError, match="preview again"):
        ta.apply(tiny_store, "merge", "bill_question", "card_issue", expected_rows=p["n_rows"])
    assert len(tiny_store.annotations()) == 1  # nothing of the merge stored


@pytest.mark.parametrize(("kind", "a", "b", "label", "error", "match"), [
    ("merge", "nope", "card_issue", None, AnnotationError, "unknown intent 'nope'"),
    ("merge", "Card_Issue", "bill_question", None, AnnotationError, "did you mean 'card_issue'"),
    ("merge", "card_issue", "card_issue", None, AnnotationError, "same intent"),
    ("merge", "card_issue", None, None, MissingFieldError, "field 'b'"),
    ("merge", None, "card_issue", None, MissingFieldError, "field 'a'"),
    ("merge", "card_issue", "bill_question", "Chat_Settings", AnnotationError, "clashes"),
    ("merge", "card_issue", "bill_question", "chat_settings", AnnotationError, "already exists"),
    ("merge", "card_issue", "out_of_scope", None, AnnotationError, "reserved"),
    ("rename", "card_issue", None, "", MissingFieldError, "label"),
    ("rename", "card_issue", None, "   ", MissingFieldError, "label"),
    ("rename", "card_issue", None, "bill_question", AnnotationError, "already exists"),
    ("rename", "card_issue", None, "out_of_scope", AnnotationError, "reserved"),
    ("rename", "card_issue", None, "a\nb", AnnotationError, "one line"),
    ("rename", "card_issue", "bill_question", "x", AnnotationError, "does not apply"),
    ("split", "card_issue", None, "x", MissingFieldError, "field 'ids'"),
    ("split", "card_issue", "bill_question", "x", AnnotationError, "does not apply to a split"),
    ("swap", "card_issue", None, "x", AnnotationError, "unknown action kind"),
])
def test_bad_input_is_a_typed_error_and_stores_nothing(tiny_store, kind, a, b, label, error, match):
    with pytest.raises(error, match=match):
        ta.apply(tiny_store, kind, a, b, label=label)
    assert tiny_store.annotations() == []


def test_revert_of_an_unknown_or_foreign_batch(tiny_store):
    with pytest.raises(NotFoundError):
        ta.revert(tiny_store, "merge:0000")
    with pytest.raises(AnnotationError, match="not a merge, rename or split"):
        ta.revert(tiny_store, "revert:merge:0000")
    with pytest.raises(MissingFieldError):
        ta.revert(tiny_store, "")


def test_rename_case_only_is_allowed_and_merging_into_a_member_name_is_one_sided(tiny_store):
    n = counts(tiny_store)
    out = ta.apply(tiny_store, "rename", "card_issue", label="Card_Issue")
    assert counts(tiny_store)["Card_Issue"] == n["card_issue"] and out["new_intent"]
    p = ta.plan_merge(tiny_store, "Card_Issue", "bill_question", into="bill_question")
    assert p["sources"] == ["Card_Issue"] and p["n_rows"] == n["card_issue"] and not p["new_intent"]


def test_cli_previews_then_applies_a_merge_and_reverts_it(tiny_store, db_path):
    from click.testing import CliRunner

    from hl_debug.cli import cli

    n = counts(tiny_store)
    run = lambda *args: CliRunner().invoke(cli, ["--db", str(db_path), "taxonomy", *args], obj={})  # noqa: E731
    r = run("merge", "bill_question", "card_issue")
    assert r.exit_code == 0 and f"{n['bill_question']} row(s) would be labelled card_issue" in r.output
    assert tiny_store.annotations() == []
    r = run("merge", "bill_question", "card_issue", "--apply", "--format", "json")
    assert r.exit_code == 0, r.output
    batch = json.loads(r.output)["batch"]
    assert counts(tiny_store)["card_issue"] == n["card_issue"] + n["bill_question"]
    assert batch in run("changes").output
    r = run("merge", "bill_question", "card_issue")
    assert r.exit_code != 0 and "unknown intent 'bill_question'" in r.output and "Traceback" not in r.output
    assert run("revert", batch).exit_code == 0 and counts(tiny_store) != n
    r = run("revert", batch, "--apply")
    assert r.exit_code == 0 and f"{n['bill_question']} row(s) restored" in r.output and counts(tiny_store) == n
    r = run("rename", "card_issue", "Bill_Question")
    assert r.exit_code != 0 and "clashes" in r.output


def _rows_of(store, intent: str) -> list[int]:
    return [r["id"] for r in store.labelled_rows([intent])]


def test_split_moves_only_the_group_rows_that_carry_the_intent_now_and_reverts(tiny_store):
    before = counts(tiny_store)
    card = _rows_of(tiny_store, "card_issue")
    group = card[: len(card) // 2]
    moved_away = group[0]
    bill_row = _rows_of(tiny_store, "bill_question")[0]  # listed, but never card_issue's
    record_decision(tiny_store, moved_away, "relabel", "bill_question")  # decided elsewhere since the advisor ran
    p = ta.plan(tiny_store, "split", "card_issue", label="card_declined", ids=group + [bill_row])
    assert p["kind"] == "split" and p["sources"] == ["card_issue"] and p["target"] == "card_declined"
    assert p["new_intent"] and p["n_rows"] == len(group) - 1 and p["n_skipped"] == 2
    assert moved_away not in p["ids"] and bill_row not in p["ids"]
    assert len(tiny_store.annotations()) == 1  # a preview stores nothing
    out = ta.apply(tiny_store, "split", "card_issue", label="card_declined", ids=group + [bill_row],
                   expected_rows=p["n_rows"])
    assert out["batch"].startswith("split:")
    after = counts(tiny_store)
    assert after["card_declined"] == len(group) - 1
    assert after["card_issue"] == before["card_issue"] - len(group)  # the rest keep the intent
    assert after["bill_question"] == before["bill_question"] + 1  # the row decided elsewhere stays there
    rows = {r["id"]: r for r in tiny_store.utterance_rows()}
    assert all(rows[i]["intent"] == "card_issue" for i in group)  # originals kept
    assert any(c["batch"] == out["batch"] for c in ta.changes(tiny_store))
    back = ta.revert(tiny_store, out["batch"])
    assert back["n_rows"] == len(group) - 1
    assert "card_declined" not in counts(tiny_store)
    assert counts(tiny_store)["card_issue"] == before["card_issue"] - 1


@pytest.mark.parametrize(("ids", "label", "error", "match"), [
    ([], "x", MissingFieldError, "field 'ids'"),
    ("1,2", "x", AnnotationError, "list of utterance ids"),
    ([1.5], "x", AnnotationError, "list of utterance ids"),
    ([True], "x", AnnotationError, "list of utterance ids"),
    ([999999], "x", AnnotationError, "none of the 1 listed rows"),
    (None, "bill_question", MissingFieldError, "field 'ids'"),
    ("all", "bill_question", AnnotationError, "already exists"),
    ("all", "card_issue", AnnotationError, "already exists"),
    ("every", "x", AnnotationError, "that is a rename"),
])
def test_bad_split_is_a_typed_error_and_stores_nothing(tiny_store, ids, label, error, match):
    card = _rows_of(tiny_store, "card_issue")
    ids = card[:2] if ids == "all" else card if ids == "every" else ids
    with pytest.raises(error, match=match):
        ta.apply(tiny_store, "split", "card_issue", label=label, ids=ids)
    assert tiny_store.annotations() == []


def test_merge_refuses_ids(tiny_store):
    with pytest.raises(AnnotationError, match="does not apply to a merge"):
        ta.plan(tiny_store, "merge", "card_issue", "bill_question", ids=[1])


def test_split_group_ids_read_the_reports_groups():
    report = {"split": [{"intent": "a", "groups": [{"ids": [1, 2, 3]}, {"ids": [4, 5]}]}]}
    assert ta.split_group_ids(report, "a", 2) == [4, 5] and ta.split_group_ids(report, "a", 1) == [1, 2, 3]
    with pytest.raises(NotFoundError, match="no split group 3"):
        ta.split_group_ids(report, "a", 3)
    with pytest.raises(NotFoundError, match="intent 'b'"):
        ta.split_group_ids(report, "b", 1)
    with pytest.raises(NotFoundError):
        ta.split_group_ids(None, "a", 1)  # the signal never ran
    with pytest.raises(MissingFieldError, match="field 'group'"):
        ta.split_group_ids(report, "a", None)
    for bad in (0, -1, "1", True, 1.0):
        with pytest.raises(AnnotationError, match="positive integer"):
            ta.split_group_ids(report, "a", bad)
