"""Local model quality and predict throughput against the local model server.

1. Trains (or loads) the local model on the export's ``training`` rows and prints its
   accuracy per split and its top-label agreement with the live API's recorded answers
   (on the texts the API answered).
2. Serves it on a loopback port (the same in-process server ``hl-debug predict`` uses) and
   times ``PredictClient.predict_many`` over ``--n`` distinct texts at each concurrency
   level (the encoder is warmed up first, so model loading is not counted), in two server
   modes: ``encode`` (every incoming text is encoded, as for any remote client) and
   ``cached`` (vectors the store already holds are reused, as ``hl-debug predict`` does).
   Nothing is written to the prediction cache.

With ``--scale-db DB`` (a processed database, e.g. a copy of one ``pipeline.py`` left) it
instead times the two parts of ``hl-debug predict`` that grow with the export, on the
vectors the database already holds (no encoder is loaded):

* training: the local model as it was (the libraries' default threads, 5 calibration folds:
  ``before``) and as it is (``after``), with accuracy per split, top-label agreement with the
  recorded API answers when the database holds them, and agreement between the two;
* answering: every text in-process (:class:`hl_debug.sources.local.LocalSource`, what
  ``hl-debug predict`` does now) vs ``--http-n`` texts over the loopback server, 20 per
  request (what it did before; extrapolated to every text).

Prints Markdown tables; paste them into ``benchmarks/RESULTS.md`` with the command.

Example::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/predict_throughput.py --n 600 --concurrency 1,4
    .venv/bin/python benchmarks/predict_throughput.py --scale-db /tmp/me/bench-100000.db --http-n 10000
    .venv/bin/python benchmarks/predict_throughput.py --synthetic 300 --http-n 100   # quick checks
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/predict_throughput.py --limit 400 --n 40 --concurrency 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def clone_fitted(model, encoder):
    """The fitted vector ``model`` serving texts through ``encoder``."""
    from hl_debug.sources.local import EncodedModel

    return EncodedModel(encoder, model)


class CachedVectors:
    """An encoder that reads known vectors by text hash and encodes only the rest (the
    server's "cached" mode; benchmark-only)."""

    def __init__(self, encoder, vectors) -> None:
        self.encoder, self.vectors = encoder, vectors
        self.identity = encoder.identity

    def transform(self, texts):
        import numpy as np

        from hl_debug.domain import text_hash

        found = [self.vectors.get(text_hash(t)) for t in texts]
        missing = [i for i, v in enumerate(found) if v is None]
        if missing:
            for i, v in zip(missing, self.encoder.transform([texts[i] for i in missing]), strict=True):
                found[i] = v
        return np.vstack(found).astype(np.float32) if texts else self.encoder.transform([])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", default=str(SHARED / "chatbot_intent_classifier_data.json.zip"))
    ap.add_argument("--recorded", default=str(SHARED / "recorded_predictions_project411.json"))
    ap.add_argument("--db", default=None, help="Database to use (default: a fresh temporary one).")
    ap.add_argument("--n", type=int, default=600, help="Distinct texts sent per concurrency level.")
    ap.add_argument("--concurrency", default="1,4", help="Comma-separated concurrency levels.")
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--modes", default="encode,cached",
                    help="Server modes: 'encode' (encode every text), 'cached' (reuse the store's vectors).")
    ap.add_argument("--repeats", type=int, default=1, help="Timed passes per level (best is reported).")
    ap.add_argument("--scale-db", default=None, help="Time training and answering on this processed database.")
    ap.add_argument("--variants", default="before,after", help="--scale-db: training variants to time.")
    ap.add_argument("--http-n", type=int, default=10000, help="--scale-db: texts asked over HTTP (0: skip).")
    ap.add_argument("--limit", type=int, default=None, help="only N of the export's rows, spread over it (a quick check)")
    ap.add_argument("--synthetic", type=int, metavar="N",
                    help="--scale-db on a synthetic database of N utterances (stand-in vectors; a quick check)")
    args = ap.parse_args()
    if args.synthetic:
        from benchmarks.synthetic import ingested_store

        with tempfile.TemporaryDirectory() as tmp:
            args.scale_db = str(Path(tmp) / f"synthetic-{args.synthetic}.db")
            ingested_store(Path(args.scale_db), args.synthetic, embed=True).close()
            scale(args)
        return
    if args.scale_db:
        scale(args)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import logging

    import numpy as np

    from hl_debug.models.encoders import default_encoder
    from hl_debug.sources.model_server import ServerThread, create_model_app
    from hl_debug.sources.remote import PredictClient
    from hl_debug.steps.embed import embed
    from hl_debug.steps.ingest import ingest
    from hl_debug.steps.train import load_vectors, train_or_load
    from hl_debug.storage import Store, text_hash

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory()
        args.db = str(Path(tmp.name) / "bench.db")
    from benchmarks.synthetic import export_subset

    store = Store(args.db)
    ingest(store, export_subset(Path(args.export), args.limit, Path(args.db).parent))
    encoder = default_encoder()
    t0 = time.perf_counter()
    embed(store, encoder, progress=False)
    model = train_or_load(store, encoder=encoder)
    train_s = time.perf_counter() - t0

    # -- quality ----------------------------------------------------------------------
    ids, X = store.load_embeddings(encoder.identity)
    cols = store.utterance_columns(("id", "text_hash"))
    hash_of = dict(zip(cols["id"], cols["text_hash"], strict=True))
    by_hash = {hash_of[i]: p for i, p in zip(ids.tolist(), model.predict(X), strict=True)}
    recorded = json.loads(Path(args.recorded).read_text(encoding="utf-8"))
    answered = [(text_hash(it["data"]["text"]), it["predictions"][0]["value"][0]["label"])
                for it in recorded if it["predictions"] and it["predictions"][0]["value"]]
    answered = [(h, lbl) for h, lbl in answered if h in by_hash]  # all of them unless --limit
    agree = np.mean([by_hash[h] == lbl for h, lbl in answered])
    meta = model.metadata_

    # -- throughput ----------------------------------------------------------------------
    # "encode": the server encodes every incoming text (a remote client's view);
    # "cached": the server reads vectors the store already has (what `hl-debug predict` does).
    texts = sorted(store.texts_by_hash().values())[: args.n]
    pid = store.project_ids()[0]
    results = []
    for mode in args.modes.split(","):
        served = clone_fitted(model, encoder if mode == "encode" else CachedVectors(encoder, load_vectors(store, encoder.identity)[2]))
        key = secrets.token_urlsafe(16)
        with ServerThread(create_model_app(served, project_id=pid, api_key=key)) as server:
            client = PredictClient(server.url, project_id=pid, api_key=key, n_best=len(model.classes_), timeout=120)
            list(client.predict_many(texts[:40], concurrency=2))  # warm-up: load the encoder once
            for level in [int(c) for c in args.concurrency.split(",")]:
                best = None
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    outcomes = list(client.predict_many(texts, batch_size=args.batch_size, concurrency=level))
                    dt = time.perf_counter() - t0
                    assert all(o.error is None for o in outcomes), [o.error for o in outcomes if o.error][:1]
                    best = dt if best is None else min(best, dt)
                results.append((mode, level, best, len(texts) / best))

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}")
    print(f"Local model: {meta['encoder']} + {meta['params']['calibration']}-calibrated LogisticRegression"
          f"(C={meta['params']['C']}), {meta['n_train']} training rows, {len(meta['classes'])} intents; "
          f"train/load {train_s:.1f}s")
    print()
    print("| metric | value |")
    print("|---|---|")
    print(f"| top-label agreement with recorded API labels ({len(answered)} answered texts) | {agree:.4f} |")
    for split, acc in meta["accuracy"].items():
        print(f"| accuracy on `{split}` rows (vs annotations, n={acc['n']}) | {acc['accuracy']:.4f} |")
    print()
    print("| server mode | concurrency | texts | batch | seconds | utterances/s |")
    print("|---|---|---|---|---|---|")
    for mode, level, secs, rate in results:
        print(f"| {mode} | {level} | {len(texts)} | {args.batch_size} | {secs:.2f} | {rate:.1f} |")
    store.close()
    if tmp is not None:
        tmp.cleanup()


TRAINING_VARIANTS = {
    "before": {"cv": 5, "n_threads": None},  # the model up to session 2
    "after": {},  # the defaults: cv="auto", n_threads=1
}


def scale(args: argparse.Namespace) -> None:
    """Training and answering at the database's size (see the module docstring)."""
    import logging

    import numpy as np

    from hl_debug.models.intent_model import LocalIntentModel
    from hl_debug.sources.base import Query
    from hl_debug.sources.local import LocalSource
    from hl_debug.sources.model_server import ServerThread, create_model_app
    from hl_debug.sources.remote import PredictClient
    from hl_debug.steps.signals import api_endpoint
    from hl_debug.steps.train import resolve_encoder_identity
    from hl_debug.storage import Store

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    store = Store(args.scale_db)
    encoder_id = resolve_encoder_identity(store)  # the active encoder (the one `hl-debug embed` recorded)
    t0 = time.perf_counter()
    ids, X = store.load_embeddings(encoder_id)
    load_s = time.perf_counter() - t0
    cols = store.utterance_columns(("id", "text_hash", "intent", "usage"))
    at = {i: k for k, i in enumerate(cols["id"])}
    order = [at[i] for i in ids.tolist()]
    usage = np.array([cols["usage"][k] for k in order], dtype=object)
    intent = np.array([cols["intent"][k] or "" for k in order], dtype=object).astype(str)
    hashes = [cols["text_hash"][k] for k in order]
    # the recorded API's answers when imported (what the signals step compares against), else none
    # (api_endpoint prefers imported recorded answers over the active endpoint, the local model)
    recorded_ep = api_endpoint(store, None)
    if recorded_ep == store.active_endpoint() and not str(recorded_ep).startswith("recorded:"):
        recorded_ep = None
    recorded: dict[str, str] = {}
    if recorded_ep is not None:
        answers = store.prediction_columns(("text_hash", "label"), endpoint=recorded_ep)
        recorded = {h: lbl for h, lbl in zip(answers["text_hash"], answers["label"], strict=True) if lbl is not None}
    train = (usage == "training") & (intent != "")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}; "
          f"{args.scale_db}: {len(X)} rows, {int(train.sum())} training rows, {X.shape[1]}-d {encoder_id} "
          f"(vectors loaded in {load_s:.1f}s); load average {os.getloadavg()[0]:.1f}")
    print()
    print("| variant | fit s | validation acc | testing acc | agreement with recorded API | same top label as before |")
    print("|---|---|---|---|---|---|")
    models, preds = {}, {}
    for name in args.variants.split(","):
        model = LocalIntentModel(**TRAINING_VARIANTS[name])
        t0 = time.perf_counter()
        model.fit(X[train], intent[train])
        fit_s = time.perf_counter() - t0
        pred = model.predict(X)
        models[name], preds[name] = model, pred
        acc = {sp: np.mean(pred[(usage == sp) & (intent != "")] == intent[(usage == sp) & (intent != "")])
               for sp in ("validation", "testing")}
        both = [k for k, h in enumerate(hashes) if h in recorded]
        agree = f"{np.mean([pred[k] == recorded[hashes[k]] for k in both]):.4f} (n={len(both)})" if both else "-"
        same = f"{np.mean(pred == preds['before']):.4f}" if "before" in preds and name != "before" else "-"
        print(f"| {name} | {fit_s:.1f} | {acc['validation']:.4f} | {acc['testing']:.4f} | {agree} | {same} |",
              flush=True)

    model = models[args.variants.split(",")[-1]]
    by_hash = {h: X[k] for k, h in enumerate(hashes)}
    served = clone_fitted(model, CachedVectors(_NoEncoder(encoder_id), by_hash))
    texts_by_hash = store.texts_by_hash()
    texts = list(texts_by_hash.values())
    vectors = np.vstack([by_hash[h] for h in texts_by_hash])
    k = len(model.classes_)
    print()
    print("| answering | texts | requests | seconds | utterances/s | seconds for every text |")
    print("|---|---|---|---|---|---|")
    scorer = LocalSource(_Named(model), n_best=k)
    t0 = time.perf_counter()
    n = sum(len(o.texts) for o in scorer.answers(Query(texts, vectors)))
    dt = time.perf_counter() - t0
    print(f"| in-process, chunks of {scorer.chunk_size} | {n} | {scorer.stats.requests} | {dt:.1f} | {n / dt:.0f} "
          f"| {dt:.1f} |", flush=True)
    if args.http_n:
        sub = texts[: args.http_n]
        key = secrets.token_urlsafe(16)
        with ServerThread(create_model_app(served, project_id=1, api_key=key)) as server:
            client = PredictClient(server.url, project_id=1, api_key=key, n_best=k, timeout=120)
            t0 = time.perf_counter()
            outcomes = list(client.predict_many(sub, batch_size=20, concurrency=4))
            dt = time.perf_counter() - t0
        assert all(o.error is None for o in outcomes), [o.error for o in outcomes if o.error][:1]
        print(f"| loopback HTTP, 20 per request, concurrency 4 | {len(sub)} | {client.stats.requests} | {dt:.1f} "
              f"| {len(sub) / dt:.0f} | {dt * len(texts) / len(sub):.1f} (extrapolated) |")
    store.close()


class _Named:
    """A fitted model under a fixed name (:class:`~hl_debug.sources.local.LocalSource` names its
    answers by ``metadata_["model_hash"]``, which only a saved model has)."""

    def __init__(self, model) -> None:
        self.model, self.classes_ = model, model.classes_
        self.metadata_ = {"model_hash": "benchmark"}

    def top_k(self, X, k=None):
        return self.model.top_k(X, k)


class _NoEncoder:
    """Stands in for the encoder when every vector is known: encoding anything is a bug here."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def transform(self, texts):
        raise RuntimeError(f"{len(texts)} text(s) have no cached vector")


if __name__ == "__main__":
    main()
