"""The predict step: scoring, the cache, resume after Ctrl-C, recorded answers, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.errors import ConfigError, MissingStepError, NotFoundError, PredictionsFileError
from hl_debug.sources.model_server import ServerThread
from hl_debug.sources.remote import PredictClient, RemoteSource
from hl_debug.steps.embed import embed
from hl_debug.steps.ingest import ingest
from hl_debug.steps.predict import (
    PredictOptions,
    distribution_stats,
    import_predictions,
    local_identity,
    predict,
    predict_step,
    prediction_rows,
    remote_identity,
    rows_from_answers,
)
from tests.fakes import FakeEncoder
from tests.test_api_client import FlakyServer, label_of


def predictions_frame(store, endpoint=None):
    """One row per utterance (id order): its text and ``endpoint``'s cached answer (default: the active one)."""
    import pandas as pd

    frame = pd.DataFrame(store.prediction_columns(
        ("id", "label", "confidence", "distribution", "entropy", "margin", "endpoint"),
        endpoint=endpoint or store.active_endpoint(), align="id"))
    texts = store.utterance_columns(("id", "text"))
    return frame.assign(text=texts["text"]) if list(frame["id"]) == texts["id"] else pytest.fail("misaligned")


# -- scoring ------------------------------------------------------------------------------


def test_entropy_and_margin_of_full_distributions():
    P = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    entropy, margin = distribution_stats(P)
    np.testing.assert_allclose(entropy, [0.0, math.log(2), math.log(3)])
    np.testing.assert_allclose(margin, [1.0, 0.0, 0.0], atol=1e-12)


def test_top1_answers_count_the_missing_mass():
    entropy, margin = distribution_stats(np.array([[0.9], [0.6]]))
    expected = [-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))]
    np.testing.assert_allclose(entropy, expected)
    np.testing.assert_allclose(margin, [0.8, 0.2])
    plain_entropy, plain_margin = distribution_stats(np.array([[0.9]]), residual=False)
    assert plain_entropy[0] == pytest.approx(-0.9 * math.log(0.9)) and plain_margin[0] == pytest.approx(0.9)


def test_rows_without_prediction_are_nan_and_padding_is_ignored():
    entropy, margin = distribution_stats(np.array([[np.nan, np.nan], [0.7, np.nan]]))
    assert np.isnan(entropy[0]) and np.isnan(margin[0])
    assert margin[1] == pytest.approx(0.4)


@pytest.mark.parametrize("P, match", [(np.ones(3), r"shape \(n, k\)"), (np.array([[1.2]]), r"\[0, 1\]")])
def test_distribution_stats_rejects_bad_input(P, match):
    with pytest.raises(ValueError, match=match):
        distribution_stats(P)


def test_rows_from_answers():
    rows = rows_from_answers(["h1", "h2"], [[("a", 0.75), ("b", 0.25)], []])
    assert rows[0]["label"] == "a" and rows[0]["confidence"] == 0.75
    assert rows[0]["distribution"] == [["a", 0.75], ["b", 0.25]] and rows[0]["margin"] == pytest.approx(0.5)
    assert rows[1] == {"text_hash": "h2", "label": None, "confidence": None, "distribution": [], "entropy": None,
                       "margin": None}


def test_identities_never_hold_the_key_and_track_the_model():
    assert remote_identity("https://x.io/v1/", 7, None) == "api:https://x.io/v1/projects/7"
    assert remote_identity("https://x.io/v1", 7, 3).endswith("?n_best=3")
    assert local_identity("a" * 40, None) != local_identity("b" * 40, None)


# -- predict against a (flaky) remote endpoint --------------------------------------------------


@pytest.fixture
def flaky_url():
    servers = []

    def _start(flaky: FlakyServer) -> str:
        servers.append(ServerThread(flaky.app).start())
        return servers[-1].url

    yield _start
    for s in servers:
        s.shutdown()


FAST = {"backoff_base": 0.001, "backoff_cap": 0.01, "timeout": 1.0, "progress": False}


def distinct_texts(store):
    return sorted(store.texts_by_hash().values())


def test_predict_fills_the_cache_and_counts_empty_answers(tiny_store, flaky_url):
    texts = distinct_texts(tiny_store)
    flaky = FlakyServer(empty={texts[0], texts[5]})
    counts = predict(tiny_store, api_url=flaky_url(flaky), project_id=7, api_key="k", batch_size=5, **FAST)
    assert counts["n_predicted"] == len(texts) == 24 and counts["n_without_prediction"] == 2 and not counts["skipped"]
    assert counts["endpoint"] == tiny_store.active_endpoint()
    df = predictions_frame(tiny_store)
    assert len(df) == 24 and df["label"].isna().sum() == 2
    row = df[df.text == texts[1]].iloc[0]
    assert row.label == label_of(texts[1]) and row.confidence == 0.7
    assert json.loads(row.distribution) == [[label_of(texts[1]), 0.7], ["other", 0.2]]
    # n_best="all" asks for as many intents as the export has
    assert counts["endpoint"].startswith("api:") and "n_best" not in counts["endpoint"]
    assert max(flaky.batch_sizes) <= 5


def test_rerun_asks_nothing(tiny_store, flaky_url):
    flaky = FlakyServer()
    url = flaky_url(flaky)
    predict(tiny_store, api_url=url, project_id=7, **FAST)
    n_requests = len(flaky.batch_sizes)
    counts = predict(tiny_store, api_url=url, project_id=7, **FAST)
    assert counts["skipped"] and counts["n_cached"] == 24 and len(flaky.batch_sizes) == n_requests


def test_flaky_endpoint_nothing_lost_nothing_asked_twice(tiny_store, flaky_url):
    texts = distinct_texts(tiny_store)
    # batches of 5 in text-hash order; fault the batch that starts with whichever text comes first
    order = sorted(tiny_store.texts_by_hash().items())
    firsts = [order[i][1] for i in range(0, 24, 5)]
    flaky = FlakyServer({firsts[0]: ["500", "500"], firsts[1]: ["429"], firsts[2]: ["slow"],
                         firsts[3]: ["short"]}, retry_after="0", empty={texts[2]})
    url = flaky_url(flaky)
    counts = predict(tiny_store, api_url=url, project_id=7, batch_size=5, concurrency=3, **FAST)
    assert counts["n_failed"] == 5 and "expected 5 answers" in counts["first_error"]
    assert counts["n_predicted"] == 19 and counts["retries"] == 4
    saved = tiny_store.cached_prediction_hashes(counts["endpoint"])
    assert len(saved) == 19
    # the re-run asks only the failed batch's texts
    seen_before = len(flaky.log)
    counts2 = predict(tiny_store, api_url=url, project_id=7, batch_size=5, **FAST)
    assert counts2["n_predicted"] == 5 and counts2["n_cached"] == 19 and counts2["n_failed"] == 0
    assert sorted(t for t, _ in flaky.log[seen_before:]) == sorted(t for t, o in flaky.log if o == "short")
    # every text answered (and kept) exactly once
    assert flaky.ok_counts() == {t: 1 for t in texts}
    assert predictions_frame(tiny_store)["label"].isna().sum() == 1


def test_interrupted_run_resumes_without_re_asking(tiny_store, flaky_url, monkeypatch):
    flaky = FlakyServer()
    url = flaky_url(flaky)
    real_save = tiny_store.save_predictions
    calls = {"n": 0}

    def save_then_interrupt(endpoint, rows):
        calls["n"] += 1
        real_save(endpoint, rows)
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(tiny_store, "save_predictions", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        predict(tiny_store, api_url=url, project_id=7, batch_size=4, concurrency=1, **FAST)
    monkeypatch.setattr(tiny_store, "save_predictions", real_save)
    assert tiny_store.last_run("predict", status=None)["status"] == "interrupted"
    endpoint = remote_identity(url, 7, None)
    saved = {h for h in tiny_store.cached_prediction_hashes(endpoint)}
    assert len(saved) == 8
    texts = tiny_store.texts_by_hash()
    before = len(flaky.log)
    counts = predict(tiny_store, api_url=url, project_id=7, batch_size=4, **FAST)
    asked_again = {t for t, _ in flaky.log[before:]}
    assert counts["n_cached"] == 8 and counts["n_predicted"] == 16
    assert not asked_again & {texts[h] for h in saved}


def test_wrong_key_is_a_clear_error_and_saves_nothing(tiny_store, flaky_url):
    from hl_debug.errors import PredictionAPIError

    url = flaky_url(FlakyServer(key="right"))
    with pytest.raises(PredictionAPIError, match="refused the API key"):
        predict(tiny_store, api_url=url, project_id=7, api_key="wrong", **FAST)
    assert tiny_store.endpoints() == [] and tiny_store.active_endpoint() is None


def test_the_key_is_never_stored(tiny_store, flaky_url, db_path, dump):
    predict(tiny_store, api_url=flaky_url(FlakyServer(key="hush-hush")), project_id=7, api_key="hush-hush", **FAST)
    assert "hush-hush" not in dump(db_path)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 21}, "--batch-size must be between 1 and 20"),
    ({"concurrency": 0}, "--concurrency must be at least 1"),
    ({"n_best": "some"}, "--n-best must be a positive integer or 'all'"),
    ({"n_best": 0}, "--n-best must be a positive integer or 'all'"),
    ({"project_id": "abc"}, "--project-id must be an integer"),
])
def test_bad_options_are_config_errors(tiny_store, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        predict(tiny_store, **{"api_url": "http://127.0.0.1:9", "project_id": 7, **kwargs})


def test_explicit_client_is_used(tiny_store, flaky_url):
    flaky = FlakyServer()
    client = PredictClient(flaky_url(flaky), project_id=3, n_best=1, backoff_base=0.001)
    counts = predict(tiny_store, source=RemoteSource(client, n_best=1, source="client"), progress=False)
    assert counts["n_predicted"] == 24 and all(b <= 20 for b in flaky.batch_sizes)
    assert counts["endpoint"] == remote_identity(client.base_url, 3, 1)


def test_options_are_one_frozen_value_and_keywords_override_it(tiny_store, flaky_url):
    import dataclasses

    options = PredictOptions(api_url=flaky_url(FlakyServer()), project_id=7, n_best=2, **FAST)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.n_best = 3
    assert predict(tiny_store, options, batch_size=4)["endpoint"].endswith("?n_best=2")
    assert PredictOptions.from_mapping({"n_best": 3, "unknown": 1, "api_url": None}) == PredictOptions(n_best=3)


# -- predict with the local model ----------------------------------------------------


def local_predict(store, encoder=None, **kwargs):
    """The embed step, then predict with the local model on its vectors."""
    encoder = encoder if encoder is not None else FakeEncoder()
    embed(store, encoder, progress=False)
    return predict(store, encoder=encoder, progress=False, **kwargs)


def test_local_model_needs_the_embed_step_first(tiny_store):
    with pytest.raises(MissingStepError, match="no embeddings") as info:
        predict(tiny_store, progress=False)
    assert info.value.step == "embed"


def test_local_server_path_fills_every_row_and_tracks_the_model(tiny_store):
    enc = FakeEncoder()
    counts = local_predict(tiny_store, enc)
    assert enc.texts_seen == 24  # embedded once by the embed step; the model scores those vectors
    assert counts["endpoint"].startswith("local:") and counts["n_predicted"] == 24
    df = predictions_frame(tiny_store)
    assert df["label"].notna().all()
    dist = json.loads(df.distribution.iloc[0])
    assert len(dist) == 3 and sum(c for _, c in dist) == pytest.approx(1.0)  # n_best=all: full distribution
    again = local_predict(tiny_store)
    assert again["skipped"] and again["endpoint"] == counts["endpoint"]


def test_local_answers_are_scored_in_process_and_match_the_model_server(tiny_store, monkeypatch):
    from hl_debug.models.intent_model import LocalIntentModel
    from hl_debug.sources.local import EncodedModel
    from hl_debug.sources.model_server import create_model_app
    from hl_debug.steps.train import model_dir_for

    monkeypatch.setattr("hl_debug.sources.model_server.ServerThread.start", lambda self: pytest.fail("server started"))
    counts = local_predict(tiny_store)
    assert counts["requests"] == 1 and counts["n_predicted"] == 24  # one in-process chunk, no HTTP
    assert tiny_store.last_run("predict")["parameters"]["mode"] == "in-process"
    monkeypatch.undo()
    # the same model behind the HTTP contract gives byte-identical cache rows
    model = EncodedModel(FakeEncoder(), LocalIntentModel.load(model_dir_for(tiny_store)))
    texts = tiny_store.texts_by_hash()
    with ServerThread(create_model_app(model, project_id=7)) as server:
        client = PredictClient(server.url, project_id=7, n_best=3)
        over_http = {}
        for outcome in client.predict_many(list(texts.values()), batch_size=20):
            over_http.update(zip(outcome.texts, outcome.answers))
    expected = rows_from_answers(list(texts), [over_http[t] for t in texts.values()])
    got = predictions_frame(tiny_store).drop_duplicates("text").set_index("text")
    for h, row in zip(texts, expected):
        mine = got.loc[texts[h]]
        assert (mine.label, mine.confidence, mine.entropy, mine.margin) == \
            (row["label"], row["confidence"], row["entropy"], row["margin"])
        assert json.loads(mine.distribution) == row["distribution"]


def _change_text(records, index):
    data = json.loads(records[index]["data"])
    data["text"] += " (edited)"
    records[index]["data"] = json.dumps(data)
    return data["text"]


def test_a_changed_text_is_the_only_one_asked_again_of_a_remote_endpoint(tiny_store, tiny_records, write_export,
                                                                         flaky_url):
    flaky = FlakyServer()
    url = flaky_url(flaky)
    predict(tiny_store, api_url=url, project_id=7, **FAST)
    asked_before = len(flaky.log)
    edited = _change_text(tiny_records, 0)  # a training row: irrelevant to a remote endpoint
    ingest(tiny_store, write_export(tiny_records))
    counts = predict(tiny_store, api_url=url, project_id=7, **FAST)
    assert counts["n_predicted"] == 1 and counts["n_cached"] == 23
    assert flaky.log[asked_before:] == [(edited, "ok")]


def test_local_model_keeps_its_answers_unless_a_training_row_changes(tiny_store, tiny_records, write_export):
    first = local_predict(tiny_store)
    unlabeled = next(i for i, r in enumerate(tiny_records) if r["usage"] is None)
    _change_text(tiny_records, unlabeled)
    ingest(tiny_store, write_export(tiny_records))
    enc = FakeEncoder()
    second = local_predict(tiny_store, enc)
    # same model, same identity: only the new text is embedded and scored
    assert second["endpoint"] == first["endpoint"]
    assert (second["n_predicted"], second["n_cached"], enc.texts_seen) == (1, 23, 1)
    _change_text(tiny_records, 0)  # a training row: the model is retrained and every answer may change
    ingest(tiny_store, write_export(tiny_records))
    third = local_predict(tiny_store)
    assert third["endpoint"] != first["endpoint"] and third["n_predicted"] == 24 and third["requests"] == 1
    assert tiny_store.active_endpoint() == third["endpoint"]


def test_predict_step_adapter(tiny_store):
    embed(tiny_store, FakeEncoder(), progress=False)
    counts = predict_step(tiny_store, {"encoder": FakeEncoder(), "progress": False, "n_best": 2})
    assert counts["endpoint"].endswith("?n_best=2") and counts["n_predicted"] == 24
    dist = json.loads(predictions_frame(tiny_store)["distribution"].iloc[0])
    assert len(dist) == 2


# -- recorded answers -----------------------------------------------------------------------


def _answer(text, label=None, conf=0.9):
    value = [] if label is None else [{"label": label, "confidence": conf}]
    return {"data": {"text": text}, "predictions": [{"value": value}]}


def test_import_matches_by_text(tiny_store, tmp_path):
    texts = tiny_store.utterance_rows(("id", "text"))
    items = [_answer(r["text"], "card_issue" if i % 3 else None) for i, r in enumerate(reversed(texts))]
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(items))
    counts = import_predictions(tiny_store, path)
    assert counts["endpoint"] == "recorded:answers" and counts["n_saved"] == 24
    assert counts["n_without_prediction"] == 8
    df = predictions_frame(tiny_store, "recorded:answers")
    assert df["label"].isna().sum() == 8
    assert tiny_store.get_meta("recorded_endpoint") == "recorded:answers"


def test_import_in_export_order_without_texts(tiny_store, tmp_path):
    rows = tiny_store.utterance_rows(("id", "text"), order="position")
    items = [{"predictions": [{"value": [{"label": f"L{i}", "confidence": 0.5}]}]} for i in range(len(rows))]
    path = tmp_path / "ordered.json"
    path.write_text(json.dumps(items))
    import_predictions(tiny_store, path, endpoint="recorded:x")
    got = {r["id"]: r["label"] for r in prediction_rows(tiny_store, "recorded:x")}
    assert [got[r["id"]] for r in rows] == [f"L{i}" for i in range(len(rows))]


def test_import_without_texts_and_wrong_length_is_an_error(tiny_store, tmp_path):
    path = tmp_path / "short.json"
    path.write_text(json.dumps([{"predictions": []}] * 3))
    with pytest.raises(PredictionsFileError, match="answer item 0: no 'data.text'.*3 items for 24"):
        import_predictions(tiny_store, path)


def test_import_reports_every_bad_item_and_writes_nothing(tiny_store, tmp_path):
    text = tiny_store.utterance_rows(("text",))[0]["text"]
    items = [_answer(text, "a"), {"data": {"text": text}}, _answer(text, "b", conf=7)]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(items))
    with pytest.raises(PredictionsFileError) as info:
        import_predictions(tiny_store, path)
    assert "2 invalid answer item(s)" in info.value.message and "answer item 1" in info.value.message
    assert "answer item 2" in info.value.message and tiny_store.endpoints() == []


@pytest.mark.parametrize("content, match", [("{nope", "not valid JSON"), ("[]", "non-empty JSON array"),
                                            ('[{"data": {"text": "zzz"}, "predictions": []}]', "none of the 1")])
def test_import_rejects_unusable_files(tiny_store, tmp_path, content, match):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(PredictionsFileError, match=match):
        import_predictions(tiny_store, path)


def test_import_missing_file(tiny_store, tmp_path):
    with pytest.raises(PredictionsFileError, match="cannot read"):
        import_predictions(tiny_store, tmp_path / "nope.json")


def test_prediction_rows_unknown_endpoint_lists_valid_ones(tiny_store):
    local_predict(tiny_store)
    with pytest.raises(NotFoundError, match="valid: local:"):
        prediction_rows(tiny_store, "api:nowhere")


# -- CLI ------------------------------------------------------------------------------------------


def invoke(db_path, *args, **env):
    return CliRunner().invoke(cli, ["--db", str(db_path), *map(str, args)], obj={}, env=env or None)


def test_cli_predict_against_remote_then_export(tiny_store, db_path, flaky_url, tmp_path):
    url = flaky_url(FlakyServer(key="k1"))
    r = invoke(db_path, "predict", "--api-url", url, "--project-id", 7, HL_API_KEY="k1")
    assert r.exit_code == 0, r.output
    assert "24 distinct texts, 24 asked now, 0 already cached" in r.output and "k1" not in r.output
    out = tmp_path / "p.csv"
    r = invoke(db_path, "export", "predictions", "-o", out)
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label,confidence,entropy" and len(lines) == 25
    r = invoke(db_path, "export", "predictions", "--format", "json")
    rows = json.loads(r.output)
    assert len(rows) == 24 and set(rows[0]) == {"id", "label", "confidence", "entropy"}


def test_cli_predict_partial_failure_exits_non_zero_with_hint(tiny_store, db_path, flaky_url):
    first = sorted(tiny_store.texts_by_hash().items())[0][1]
    url = flaky_url(FlakyServer({first: ["short"]}))
    r = invoke(db_path, "predict", "--api-url", url, "--project-id", 7)
    assert r.exit_code == 1 and "20 text(s) got no usable answer" in r.output and "run the same command" in r.output


def test_cli_wrong_key_is_one_message(tiny_store, db_path, flaky_url):
    url = flaky_url(FlakyServer(key="right"))
    r = invoke(db_path, "predict", "--api-url", url, "--project-id", 7, "--api-key", "wrong", "--max-retries", 0)
    assert r.exit_code == 1 and "refused the API key" in r.output and "Hint:" in r.output
    assert "Traceback" not in r.output


def test_cli_import_predictions(tiny_store, db_path, tmp_path):
    text = tiny_store.utterance_rows(("text",))[0]["text"]
    path = tmp_path / "rec.json"
    path.write_text(json.dumps([_answer(text, None), _answer("not in db", "x")]))
    r = invoke(db_path, "import-predictions", path)
    assert r.exit_code == 0, r.output
    assert "as recorded:rec" in r.output and "1 utterances without prediction" in r.output
    assert "1 items matched no utterance" in r.output
    r = invoke(db_path, "export", "predictions", "--endpoint", "recorded:rec")
    assert r.exit_code == 0 and r.output.count("\n") == 25


def test_cli_export_without_predictions_says_what_to_run(tiny_store, db_path):
    r = invoke(db_path, "export", "predictions")
    assert r.exit_code == 1 and "hl-debug predict" in r.output


# -- the real export ------------------------------------------------------------------------------


def test_recorded_file_imports_with_38_rows_without_prediction(store, real_export, recorded_predictions):
    from hl_debug.steps.ingest import ingest

    ingest(store, real_export)
    counts = import_predictions(store, recorded_predictions)
    assert counts["n_items"] == 2327 and counts["n_unmatched"] == 0
    assert counts["n_without_prediction"] == 38
    df = predictions_frame(store, counts["endpoint"])
    assert len(df) == 2327 and df["label"].isna().sum() == 38


@pytest.mark.slow
def test_real_export_predict_with_local_server(db_path, real_export, recorded_predictions):
    r = invoke(db_path, "ingest", real_export)
    assert r.exit_code == 0, r.output
    r = invoke(db_path, "predict", "--concurrency", 2)
    assert r.exit_code == 1 and "Run `hl-debug embed` first" in r.output
    r = invoke(db_path, "embed")
    assert r.exit_code == 0, r.output
    r = invoke(db_path, "predict", "--concurrency", 2)
    assert r.exit_code == 0, r.output
    r = invoke(db_path, "import-predictions", recorded_predictions)
    assert r.exit_code == 0 and "38 utterances without prediction" in r.output
    from hl_debug.storage import Store

    store = Store(db_path)
    local = predictions_frame(store)
    assert len(local) == 2327 and local["label"].notna().all()
    recorded = predictions_frame(store, store.get_meta("recorded_endpoint"))
    answered = recorded["label"].notna()
    agreement = (local["label"][answered] == recorded["label"][answered]).mean()
    assert agreement >= 0.95
    meta = json.loads((db_path.with_name("hl.model") / "meta.json").read_text())
    assert meta["accuracy"]["validation"]["accuracy"] >= 0.9 and meta["accuracy"]["testing"]["accuracy"] >= 0.9
    store.close()


def test_cli_predict_with_the_local_server(tiny_store, db_path, monkeypatch):
    monkeypatch.setattr("hl_debug.models.encoders.default_encoder", lambda name=None, backend=None: FakeEncoder())
    embed(tiny_store, FakeEncoder(), progress=False)
    r = invoke(db_path, "predict", "--n-best", "2")
    assert r.exit_code == 0, r.output
    assert "Predictions from local:" in r.output and "24 asked now" in r.output
    r = invoke(db_path, "predict", "--n-best", "2")
    assert "0 asked now, 24 already cached" in r.output


def test_cli_bad_n_best_is_one_message(tiny_store, db_path):
    r = invoke(db_path, "predict", "--n-best", "many", "--api-url", "http://127.0.0.1:9", "--project-id", 7)
    assert r.exit_code == 1 and "--n-best must be a positive integer or 'all'" in r.output and "Hint:" in r.output


# -- failure messages (issue 15) -------------------------------------------------------------------


def test_cli_predict_failure_names_the_failed_rows_and_texts(tiny_store, db_path, flaky_url):
    order = sorted(tiny_store.texts_by_hash().items())
    first = order[0][1]
    url = flaky_url(FlakyServer({first: ["short"]}))
    r = invoke(db_path, "predict", "--api-url", url, "--project-id", 7, "--batch-size", 2)
    assert r.exit_code == 1, r.output
    failed = [order[0][1], order[1][1]]  # the first batch of 2, in text-hash order
    ids = {row["text"]: row["id"] for row in tiny_store.utterance_rows(("id", "text"))}
    for text in failed:
        assert text in r.output and f"id {ids[text]}" in r.output, r.output
    assert "2 text(s) got no usable answer" in r.output and "Traceback" not in r.output


def test_predict_counts_list_the_failed_texts(tiny_store, flaky_url):
    order = sorted(tiny_store.texts_by_hash().items())
    url = flaky_url(FlakyServer({order[0][1]: ["short"]}))
    counts = predict(tiny_store, api_url=url, project_id=7, batch_size=2, **FAST)
    ids = {row["text"]: row["id"] for row in tiny_store.utterance_rows(("id", "text"))}
    assert counts["failed"] == [{"ids": [ids[order[0][1]]], "text": order[0][1]},
                                {"ids": [ids[order[1][1]]], "text": order[1][1]}]


def test_cli_export_predictions_after_import_alone(tiny_store, db_path, tmp_path):
    rows = tiny_store.utterance_rows(("text",))
    path = tmp_path / "rec.json"
    path.write_text(json.dumps([_answer(r["text"], "card_issue") for r in rows]))
    assert invoke(db_path, "import-predictions", path).exit_code == 0
    r = invoke(db_path, "export", "predictions", "--format", "json")
    assert r.exit_code == 0, r.output
    exported = json.loads(r.output)
    assert len(exported) == 24 and all(row["label"] == "card_issue" for row in exported)


def test_cli_export_without_any_predictions_names_both_ways(tiny_store, db_path):
    r = invoke(db_path, "export", "predictions")
    assert r.exit_code == 1 and "hl-debug predict" in r.output and "import-predictions" in r.output
