"""The signals step end to end on a small synthetic export (fake encoder), and its CLI."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.errors import ConfigError, MissingStepError
from hl_debug.signals.duplicates import DUPLICATES
from hl_debug.signals.label_issues import ISSUES, LabelIssues
from hl_debug.signals.queue import QUEUE, Queue
from hl_debug.steps.embed import embed
from hl_debug.steps.ingest import ingest
from hl_debug.steps.signals import signals, signals_step
from hl_debug.storage import POINTS, text_hash
from tests.fakes import FakeEncoder

VOCAB = {
    "bill_question": ["bill", "electricity", "invoice", "due", "amount", "utility"],
    "card_issue": ["card", "lost", "stolen", "block", "replace", "pin"],
    "rates_related": ["exchange", "rate", "euro", "currency", "convert", "dollar"],
}
PLANTED_TEXT = "card lost stolen block"  # a card_issue text annotated as bill_question


def synthetic_records() -> list[dict]:
    records, next_id = [], 5000
    for intent, words in VOCAB.items():
        for j, combo in enumerate(itertools.combinations(words, 4)):
            text = " ".join(combo)
            label = intent
            if text == PLANTED_TEXT:
                label = "bill_question"
            annotated = j < 12
            usage = ("training", "training", "validation", "testing")[j % 4] if annotated else None
            records.append({"id": next_id, "project_id": 9, "complete": annotated, "usage": usage, "score": 0.1,
                            "data": json.dumps({"text": text, "intent": label if annotated else ""})})
            next_id += 1
    # A duplicate with a conflicting label, and one leaking across splits.
    records.append({"id": next_id, "project_id": 9, "complete": True, "usage": "training", "score": 0.1,
                    "data": json.dumps({"text": "bill electricity invoice due", "intent": "rates_related"})})
    records.append({"id": next_id + 1, "project_id": 9, "complete": True, "usage": "training", "score": 0.1,
                    "data": json.dumps({"text": "exchange rate currency convert", "intent": "rates_related"})})
    return records


@pytest.fixture
def sig_store(store, write_export):
    return fill_signal_store(store, write_export)


def fill_signal_store(store, write_export):
    """The synthetic export ingested and embedded (fake encoder), with a fake endpoint."""
    records = synthetic_records()
    assert any(json.loads(r["data"])["text"] == PLANTED_TEXT and r["complete"] for r in records)
    ingest(store, write_export(records))
    embed(store, FakeEncoder(), progress=False)
    # A fake endpoint: right about everything, no answer for one text.
    rows = []
    for r in records:
        text = json.loads(r["data"])["text"]
        truth = next(i for i, w in VOCAB.items() if text.split()[0] in w)
        rows.append({"text_hash": text_hash(text), "label": None if text.startswith("rate") else truth,
                     "confidence": None if text.startswith("rate") else 0.9,
                     "distribution": [[truth, 0.9]], "entropy": 0.2, "margin": 0.8})
    store.save_predictions("fake:endpoint", rows)
    store.set_meta("active_endpoint", "fake:endpoint")
    return store


def _text_of(store, utterance_id):
    return store.get_utterance(utterance_id)["text"]


def test_signals_find_the_planted_error_and_write_every_table(sig_store):
    counts = signals(sig_store, progress=False)
    assert counts["skipped"] is False and counts["n_issues_scored"] == 38
    issues = sig_store.table_rows(ISSUES, order="rank")
    top = issues[0]
    assert _text_of(sig_store, top["id"]) == PLANTED_TEXT
    assert top["given_label"] == "bill_question" and top["suggested_label"] == "card_issue" and top["flagged"] == 1
    assert top["api_label"] == "card_issue" and "API says card_issue" in top["reason"]
    assert [r["score"] for r in issues] == sorted((r["score"] for r in issues), reverse=True)

    dups = sig_store.table_rows(DUPLICATES)
    kinds = {d["kind"] for d in dups}
    assert kinds == {"conflicting_labels", "split_leakage"}
    conflict_texts = {_text_of(sig_store, d["id"]) for d in dups if d["kind"] == "conflicting_labels"}
    assert "bill electricity invoice due" in conflict_texts

    queue = sig_store.table_rows(QUEUE, order="rank")
    n_unannotated = sig_store.stats()["n_unannotated"]
    assert len(queue) == n_unannotated and all(q["predicted_label"] in VOCAB and q["reason"] for q in queue)
    assert [q["score"] for q in queue] == sorted((q["score"] for q in queue), reverse=True)

    report = sig_store.report("model_report")
    assert report["endpoints"][0]["endpoint"] == "fake:endpoint"
    assert report["endpoints"][0]["n_without_prediction"] >= 1
    summary = sig_store.report("label_issues")
    assert summary["n_flagged"] >= 1 and summary["api_endpoint"] == "fake:endpoint"


def test_unchanged_inputs_skip_and_force_recomputes(sig_store):
    signals(sig_store, progress=False)
    assert signals_step(sig_store, {"progress": False}) == {"skipped": True}
    assert signals(sig_store, force=True, progress=False)["skipped"] is False


def test_clusters_are_used_when_present(sig_store):
    ids = sig_store.utterance_columns(["id"])["id"]
    sig_store.replace_table(POINTS, [{"id": i, "x": 0.0, "y": 0.0, "cluster_id": 0, "outlier_score": 0.0}
                                      for i in ids])
    signals(sig_store, progress=False)
    assert sig_store.report("label_issues")["uses_clusters"] is True
    assert all(r["cluster_id"] == 0 for r in sig_store.table_rows(ISSUES))


def test_unknown_endpoint_is_a_config_error(sig_store):
    with pytest.raises(ConfigError, match="no predictions for endpoint 'nope'"):
        signals(sig_store, options={"api_endpoint": "nope"}, progress=False)


def test_missing_embed_step(tmp_path, write_export):
    from hl_debug.storage import Store

    s = Store(tmp_path / "fresh.db")
    ingest(s, write_export(synthetic_records(), name="fresh.json"))
    with pytest.raises(MissingStepError, match="no embeddings"):
        signals(s, progress=False)
    s.close()


def invoke(db, *args):
    return CliRunner().invoke(cli, ["--db", str(db), *args], obj={})


def test_cli_signals_exports_and_report(sig_store, db_path, tmp_path):
    r = invoke(db_path, "signals")
    assert r.exit_code == 0, r.output
    assert "flagged as likely errors" in r.output and "conflicting labels" in r.output

    r = invoke(db_path, "export", "issues", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert tuple(rows[0].keys()) == LabelIssues.columns
    assert rows[0]["text"] == PLANTED_TEXT
    scores = [float(x["score"]) for x in rows]
    assert scores == sorted(scores, reverse=True)

    out = tmp_path / "queue.json"
    r = invoke(db_path, "export", "queue", "--format", "json", "-o", str(out))
    assert r.exit_code == 0, r.output
    queue = json.loads(out.read_text())
    assert queue and tuple(queue[0].keys()) == Queue.columns

    r = invoke(db_path, "export", "duplicates")
    assert r.exit_code == 0 and "split_leakage" in r.output

    r = invoke(db_path, "report")
    assert r.exit_code == 0 and "fake:endpoint" in r.output and "ECE=" in r.output
    r = invoke(db_path, "export", "report", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.output)["endpoints"][0]["endpoint"] == "fake:endpoint"


def test_cli_exports_before_signals_say_what_to_run(tiny_store, db_path):
    for args in (("export", "issues"), ("export", "queue"), ("report",)):
        r = invoke(db_path, *args)
        assert r.exit_code != 0 and "hl-debug signals" in r.output, args


@pytest.mark.slow
def test_real_export_end_to_end(real_export, recorded_predictions, tmp_path):
    """Every signal on the real export with the real encoder and the recorded API answers."""
    from hl_debug.steps.predict import import_predictions
    from hl_debug.storage import Store

    s = Store(tmp_path / "real.db")
    ingest(s, real_export)
    embed(s, progress=False)
    import_predictions(s, recorded_predictions)
    counts = signals(s, progress=False)
    assert counts["n_issues_scored"] == 2134 and counts["n_queue"] == 193
    issues = s.table_rows(ISSUES, order="rank")
    assert all(r["suggested_label"] != r["given_label"] for r in issues)
    summary = s.report("label_issues")
    assert summary["api_endpoint"].startswith("recorded:")
    # Flags are a small, mostly-right minority, and the top of the ranking is flagged.
    assert 10 <= summary["n_flagged"] <= 200 and summary["estimated_precision"] > 0.5
    assert all(r["flagged"] for r in issues[:15])
    # The export holds the same sentence annotated two ways.
    conflicts = {s.get_utterance(d["id"])["text"] for d in s.table_rows(DUPLICATES, equals={"kind": "conflicting_labels"})}
    assert "please tell me my spending limit" in conflicts
    rep = s.report("model_report")["endpoints"][0]
    assert rep["n_without_prediction"] == 38 and rep["splits"]["testing"]["accuracy"] > 0.8
    s.close()


def test_the_context_reads_each_rows_cluster_from_the_points_columns(sig_store):
    """Clusters come from the points table's columns (no dict per row: ~0.6 GB at 1M); a row
    without a point, or with a NULL cluster, is noise (-1)."""
    import numpy as np

    from hl_debug.steps.signals import api_endpoint, load_context

    def context():
        return load_context(sig_store, encoder=sig_store.get_meta("active_encoder"), api=api_endpoint(sig_store, None))

    assert context().cluster_ids is None  # before analyze
    ids = context().ids
    has_point = ids[1::2][::-1]  # every other row, written out of order
    cluster = (np.arange(len(has_point)) % 3).astype(float)
    cluster[0] = np.nan  # NULL
    sig_store.replace_table_columns(POINTS, {"id": has_point, "x": np.zeros(len(has_point)),
                                             "y": np.zeros(len(has_point)), "cluster_id": cluster})
    got = context().cluster_ids
    want = {int(i): (-1 if c != c else int(c)) for i, c in zip(has_point, cluster)}
    assert got.dtype == np.int64 and list(got) == [want.get(int(i), -1) for i in ids]
    assert set(got[::2]) == {-1} and {0, 1, 2} <= set(got[1::2])
