"""Signals are plug-ins: a toy signal declared here — one class, no edit anywhere else — is
registered, run by the signals step, exported by ``hl-debug export toy`` and served by
``/api/signals/toy``; and the one model report reads the same from the CLI and the web."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.errors import NotFoundError
from hl_debug.signals.base import Flag, Knob, Signal, SignalResult
from hl_debug.signals.context import Predictions, SignalContext
from hl_debug.signals.registry import all_signals, evidence, get_signal, register, unregister
from hl_debug.steps.signals import signals
from hl_debug.storage.schema import Column, Evidence, Table
from tests.test_signals import fill_signal_store
from webapp import create_app

TOY = Table("toy_lengths", (Column("id", int), Column("n_words", int), Column("long", int)),
            orders={"longest": (("n_words", True),), "id": (("id", False),)})


class Toy(Signal):
    """Word counts: a signal with a table, an order, a flag, a knob, evidence and a report."""

    name = "toy"
    description = "Utterances by word count."
    table = TOY
    flags = (Flag("long-only", {"long": 1}, "Only long utterances."),)
    defaults = {"min_words": Knob(4, "Words from which an utterance is long.", int)}
    evidence = Evidence(TOY, {"toy_words": "n_words"})
    report_name = "toy"

    def find(self, context: SignalContext) -> SignalResult:
        rows = [{"id": int(i), "n_words": len(t.split()), "long": int(len(t.split()) >= self.min_words)}
                for i, t in zip(context.ids, context.texts)]
        earlier = context.results["issues"].counts["n_flagged"]  # what ran before it in this run
        return SignalResult(rows=rows, report={"n_long": sum(r["long"] for r in rows), "n_flagged": earlier},
                            counts={"n_toy": len(rows)})

    def summary(self, counts, report=None) -> str:
        return f"Toy: {counts['n_toy']} rows, {report['n_long']} long"


@pytest.fixture
def sig_store(store, write_export):
    return fill_signal_store(store, write_export)


@pytest.fixture
def toy():
    register(Toy)
    yield Toy
    unregister("toy")


def invoke(db, *args):
    return CliRunner().invoke(cli, ["--db", str(db), *args], obj={})


def test_a_toy_signal_is_run_exported_and_served(toy, sig_store, db_path):
    assert get_signal("toy") is Toy and Toy in all_signals()
    assert [e.columns for e in evidence() if e.table is TOY] == [{"toy_words": "n_words"}]

    r = invoke(db_path, "signals")
    assert r.exit_code == 0, r.output
    assert "Toy: " in r.output and "flagged as likely errors" in r.output
    rows = sig_store.table_rows(TOY, order="longest")
    assert len(rows) == sig_store.stats()["n_utterances"]
    assert sig_store.report("toy")["n_long"] == sum(r["long"] for r in rows)
    assert sig_store.report("toy")["n_flagged"] == sig_store.report("label_issues")["n_flagged"]

    r = invoke(db_path, "export", "toy", "--format", "csv")
    assert r.exit_code == 0, r.output
    exported = list(csv.DictReader(io.StringIO(r.output)))
    assert tuple(exported[0]) == ("id", "n_words", "long")
    assert [int(x["id"]) for x in exported] == [r["id"] for r in rows]  # the default order: longest first
    r = invoke(db_path, "export", "toy", "--long-only", "--format", "json")
    assert r.exit_code == 0 and all(x["long"] == 1 for x in json.loads(r.output))
    assert "toy" in invoke(db_path, "export", "--help").output

    client = create_app({"DB": str(db_path), "TESTING": True}).test_client()
    listed = client.get("/api/signals").json["signals"]
    assert {"issues", "duplicates", "queue", "report", "toy"} <= {s["name"] for s in listed}
    body = client.get("/api/signals/toy?order=id&limit=5").json
    assert body["total"] == len(rows) and [r["id"] for r in body["rows"]] == sorted(r["id"] for r in rows)[:5]
    assert body["report"] == sig_store.report("toy")
    assert client.get("/api/signals/toy?long-only=1").json["total"] == body["report"]["n_long"]
    assert client.get("/api/signals/toy?order=nope").status_code == 400
    # the inspector's rows carry the toy's evidence column, read off the registry
    first = rows[0]
    inspected = client.get(f"/api/utterances?ids={first['id']}").json["rows"][0]
    assert inspected["toy_words"] == first["n_words"] and "issue_score" in inspected


def test_knobs_reach_the_signal_and_change_the_inputs(toy, sig_store):
    signals(sig_store, progress=False)
    n_long = sig_store.report("toy")["n_long"]
    assert signals(sig_store, progress=False) == {"skipped": True}
    counts = signals(sig_store, options={"min_words": 99}, progress=False)
    assert counts["skipped"] is False and sig_store.report("toy")["n_long"] == 0 < n_long


def test_unknown_signal(sig_store, db_path):
    with pytest.raises(NotFoundError, match="unknown signal 'nope'"):
        get_signal("nope")
    client = create_app({"DB": str(db_path), "TESTING": True}).test_client()
    assert client.get("/api/signals/nope").status_code == 404
    assert invoke(db_path, "export", "nope").exit_code != 0


def test_a_signal_must_declare_what_it_exports():
    class Bad(Signal):
        name = "bad"
        table = TOY
        columns = ("id", "not_a_column")

    with pytest.raises(ValueError, match="not_a_column"):
        register(Bad)
    with pytest.raises(TypeError):
        register(object)  # type: ignore[arg-type]


def test_the_context_holds_one_knn_graph():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    ctx = SignalContext(ids=np.arange(40), texts=["t"] * 40, vectors=X, labels=["a", "b"] * 20, splits=[None] * 40)
    graph = ctx.build_graph()
    assert graph[0].shape == (40, 32) and ctx.neighbors(5)[0].base is not None
    assert ctx.build_graph() is graph  # computed once per context
    from hl_debug.neighbors import knn

    np.testing.assert_array_equal(ctx.neighbors(5)[0], knn(X, 5, cache=False)[0])
    with pytest.raises(ValueError, match="labels has 3 entries"):
        SignalContext(ids=[1, 2], texts=["a", "b"], vectors=X[:2], labels=["a", "b", "c"], splits=[None, None])
    with pytest.raises(ValueError, match="predictions of e"):
        SignalContext(ids=[1], texts=["a"], vectors=X[:1], labels=["a"], splits=[None],
                      predictions={"e": Predictions("e", [], np.zeros(0), np.zeros(0))})


def test_cli_and_web_show_the_same_model_report(sig_store, db_path):
    assert invoke(db_path, "signals").exit_code == 0
    r = invoke(db_path, "report", "--format", "json")
    assert r.exit_code == 0, r.output
    cli_report = json.loads(r.output)
    r = invoke(db_path, "export", "report", "--format", "json")
    assert json.loads(r.output) == cli_report
    app = create_app({"DB": str(db_path), "TESTING": True})
    client = app.test_client()
    assert client.get("/api/signals/report").json["report"] == cli_report
    for rep in cli_report["endpoints"]:
        assert list(rep["splits"]) == ["evaluation", "testing", "validation", "training", "all"]
        with app.app_context():
            from webapp.db import get_store

            assert app.extensions["hl_reports"].report(get_store(), rep["endpoint"]) == rep
        for split, sel in rep["splits"].items():
            html = client.get(f"/report?endpoint={rep['endpoint']}&split={split}").get_data(as_text=True)
            acc = "–" if sel["accuracy"] is None else f"{sel['accuracy']:.3f}"
            assert f'<b id="accuracy">{acc}</b>' in html, (rep["endpoint"], split)
            assert f"{sel['n_scored']} of {sel['n']} annotated rows answered" in html
            for pair in sel["most_confused"]:
                assert " ↔ ".join(pair["intents"]) in html
        assert f"Rows without a prediction ({rep['n_without_prediction']})" in html


def test_a_shared_knob_must_share_its_default():
    class Clash(Signal):
        name = "clash"
        report_name = "clash"
        defaults = {"k": Knob(7, "Neighbours.", int)}

    with pytest.raises(ValueError, match="knob 'k' defaults to 7"):
        register(Clash)
    assert "clash" not in {cls.name for cls in all_signals()}


def test_knob_bounds_become_cli_checks(sig_store, db_path):
    r = invoke(db_path, "signals", "--duplicate-threshold", "0")
    assert r.exit_code != 0 and "0<x<=1" in r.output


def test_a_results_rows_are_kept_only_for_the_signals_that_declare_they_read_them(toy, sig_store):
    """Once a signal's table is written its rows leave the run's memory (a million rows are
    ~1.5 GB of dicts per signal) unless a later signal declares ``reads_rows_of``; the rest of the
    result stays for every later signal."""
    seen: dict[str, int] = {}

    class Reader(Signal):
        name = "toy_reader"
        report_name = "toy_reader"
        reads_rows_of = ("toy",)

        def find(self, context: SignalContext) -> SignalResult:
            seen["toy rows, declared"] = len(context.results["toy"].rows)
            seen["issues rows, undeclared"] = len(context.results["issues"].rows)
            seen["issues counts"] = context.results["issues"].counts["n_flagged"]
            return SignalResult(report={"read": True})

    class After(Signal):
        name = "toy_after"
        report_name = "toy_after"

        def find(self, context: SignalContext) -> SignalResult:
            seen["toy rows, after its last reader"] = len(context.results["toy"].rows)
            return SignalResult(report={"read": True})

    register(Reader)
    register(After)
    try:
        signals(sig_store, progress=False, force=True)
    finally:
        unregister("toy_after")
        unregister("toy_reader")
    n = len(sig_store.table_rows(TOY))
    assert n > 0 and seen["toy rows, declared"] == n
    assert seen["issues rows, undeclared"] == 0 and seen["issues counts"] >= 0
    assert seen["toy rows, after its last reader"] == 0
