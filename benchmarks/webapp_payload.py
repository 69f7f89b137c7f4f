"""How the web app scales: time and size of the map's data and the inspector at N utterances.

Usage::

    .venv/bin/python benchmarks/webapp_payload.py --sizes 2327 20000 100000

Builds a synthetic database per size (utterances, points, predictions, issues, queue —
no models needed), then times, through Flask's test client: ``GET /api/points`` (the
column arrays the map loads once), ``GET /api/utterances?ids=`` for 200 ids (what a lasso
selection fetches), ``GET /`` (the map page's HTML, which must not grow with N),
``GET /issues`` and ``POST /api/annotations``. Prints one Markdown table row per size.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INTENTS = [f"intent_{k:02d}" for k in range(12)]


def build(path: Path, n: int, seed: int = 0) -> None:
    from hl_debug.store import Store, hash_json, text_hash

    rng = random.Random(seed)
    store = Store(path)
    rows = []
    for i in range(n):
        annotated = rng.random() > 0.1
        text = f"utterance {i} about {rng.choice(['bills', 'cards', 'voice', 'weather', 'music'])} {rng.random():.6f}"
        intent = rng.choice(INTENTS) if annotated else None
        rec = {"id": i, "project_id": 1, "complete": annotated, "score": 0.1,
               "usage": rng.choice(["training", "validation", "testing"]) if annotated else None,
               "data": json.dumps({"text": text, "intent": intent or ""})}
        row = {"id": i, "project_id": 1, "text": text, "intent": intent, "usage": rec["usage"],
               "complete": int(annotated), "score": 0.1, "text_hash": text_hash(text), "position": i,
               "raw": json.dumps(rec)}
        row["row_hash"] = hash_json(row)
        rows.append(row)
    store.upsert_utterances(rows)
    store.replace_rows("points", [{"id": r["id"], "x": rng.gauss(0, 5), "y": rng.gauss(0, 5),
                                   "cluster_id": rng.randrange(-1, 60), "outlier_score": rng.random()} for r in rows])
    store.save_predictions("bench", [{"text_hash": r["text_hash"], "label": rng.choice(INTENTS),
                                      "confidence": rng.random(), "entropy": rng.random(), "margin": rng.random(),
                                      "distribution": []} for r in rows])
    store.set_meta("active_endpoint", "bench")
    store.replace_rows("issues", [{"id": r["id"], "rank": k, "score": rng.random(), "given_label": r["intent"],
                                   "suggested_label": rng.choice(INTENTS), "flagged": 0, "reason": "bench"}
                                  for k, r in enumerate(x for x in rows if x["intent"])])
    store.replace_rows("queue", [{"id": r["id"], "rank": k, "score": rng.random(), "predicted_label": INTENTS[0],
                                  "reason": "bench"} for k, r in enumerate(x for x in rows if not x["intent"])])
    store.close()


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    from webapp import create_app

    ap = argparse.ArgumentParser(description="web app payload and latency at several sizes")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2327, 20000, 100000])
    args = ap.parse_args()
    print("| utterances | /api/points (s) | /api/points (MB) | inspector 200 ids (s) | map page (KB) | /issues (s) | POST decision (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.db"
            build(db, n)
            client = create_app({"DB": str(db), "TESTING": True}).test_client()
            t_points, r = timed(lambda: client.get("/api/points"))
            size_mb = len(r.data) / 1e6
            ids = ",".join(str(i) for i in range(0, n, max(1, n // 200)))[:20000]
            t_ids, _ = timed(lambda: client.get(f"/api/utterances?ids={ids}"))
            _, page = timed(lambda: client.get("/"), 1)
            t_issues, _ = timed(lambda: client.get("/issues"))
            t_post, resp = timed(lambda: client.post("/api/annotations", json={"id": 1, "action": "skip"}), 1)
            assert resp.status_code == 201
            print(f"| {n:,} | {t_points:.2f} | {size_mb:.1f} | {t_ids:.3f} | {len(page.data) / 1e3:.0f} | "
                  f"{t_issues:.2f} | {t_post:.3f} |")


if __name__ == "__main__":
    main()
