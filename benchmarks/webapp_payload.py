"""How the web app scales: time and size of the map's data and the inspector at N utterances.

Usage::

    .venv/bin/python benchmarks/webapp_payload.py --sizes 2327 20000 100000
    .venv/bin/python benchmarks/webapp_payload.py --sizes 2327 100000 --legacy f70892b~1   # before/after

Builds a synthetic database per size (utterances, points, predictions, issues, queue —
no models needed), then times, through Flask's test client: ``GET /api/points`` (the
map's data: the first request after start, then again, a reload with ``If-None-Match``,
and the first one after a review decision; bytes sent without and with
``Accept-Encoding: gzip``), ``GET /api/utterances?ids=`` for 200 ids (what a lasso
selection fetches), ``GET /`` (the map page's HTML, which must not grow with N),
``GET /issues`` and ``POST /api/annotations``. Prints one Markdown table row per size.

``--legacy REV`` also measures the web app as it was at git revision ``REV`` (its
``webapp/`` and ``hl_debug/`` extracted into a temporary folder, run in a subprocess) on
the same databases, one row each, so before and after come from one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "--root" in sys.argv:  # measure another checkout's web app (see --legacy)
    sys.path.insert(0, sys.argv[sys.argv.index("--root") + 1])
sys.path.insert(1 if "--root" in sys.argv else 0, str(ROOT))

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


def checkout(rev: str, dest: Path) -> Path:
    """``webapp/`` and ``hl_debug/`` as they were at git revision ``rev``, extracted into ``dest``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "webapp", "hl_debug"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def measure(db: Path, n: int) -> dict[str, float]:
    """Every number of one table row, for the web app importable as ``webapp``."""
    from webapp import create_app

    client = create_app({"DB": str(db), "TESTING": True}).test_client()
    gz = {"Accept-Encoding": "gzip"}
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    r = client.get("/api/points", headers=gz)  # the first request: nothing cached yet
    out["points_first_s"] = time.perf_counter() - t0
    out["gzip_mb"] = len(r.data) / 1e6 if r.headers.get("Content-Encoding") == "gzip" else float("nan")
    out["points_s"], plain = timed(lambda: client.get("/api/points"))
    out["raw_mb"] = len(plain.data) / 1e6
    etag = plain.headers.get("ETag")
    out["reload_304_s"], r = (timed(lambda: client.get("/api/points", headers={"If-None-Match": etag, **gz}))
                              if etag else (float("nan"), None))
    if r is not None:
        assert r.status_code == 304, r.status_code
    ids = ",".join(str(i) for i in range(0, n, max(1, n // 200)))[:20000]
    out["inspector_s"], _ = timed(lambda: client.get(f"/api/utterances?ids={ids}"))
    _, page = timed(lambda: client.get("/"), 1)
    out["page_kb"] = len(page.data) / 1e3
    out["issues_s"], _ = timed(lambda: client.get("/issues"))
    out["post_s"], resp = timed(lambda: client.post("/api/annotations", json={"id": 1, "action": "skip"}), 1)
    assert resp.status_code == 201
    out["after_decision_s"], _ = timed(lambda: client.get("/api/points", headers=gz), 1)
    return out


def measure_elsewhere(root: Path, db: Path, n: int) -> dict[str, float]:
    """:func:`measure` in a subprocess that imports ``webapp`` from ``root``."""
    proc = subprocess.run([sys.executable, __file__, "--root", str(root), "--measure", str(db), "--sizes", str(n)],
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(v: float, digits: int) -> str:
    return "–" if v != v else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description="web app payload and latency at several sizes")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2327, 20000, 100000])
    ap.add_argument("--legacy", metavar="REV", help="also measure the web app at this git revision")
    ap.add_argument("--root", help=argparse.SUPPRESS)  # internal: import webapp from here
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this database, print JSON
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.sizes[0])))
        return
    print("| utterances | code | /api/points first (s) | again (s) | reload, 304 (s) | after a decision (s) "
          "| sent (MB) | gzipped (MB) | inspector 200 ids (s) | map page (KB) | /issues (s) | POST decision (s) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        legacy = checkout(args.legacy, Path(tmp)) if args.legacy else None
        for n in args.sizes:
            runs = ([(f"before ({args.legacy})", legacy)] if legacy else []) + [("after", ROOT)]
            template = Path(tmp) / f"template-{n}.db"
            build(template, n)
            for name, root in runs:
                db = Path(tmp) / f"bench-{n}.db"
                shutil.copyfile(template, db)  # a fresh copy each: a POST below writes a decision
                r = measure_elsewhere(root, db, n)
                print(f"| {n:,} | {name} | {r['points_first_s']:.2f} | {r['points_s']:.2f} | {fmt(r['reload_304_s'], 3)} "
                      f"| {r['after_decision_s']:.2f} | {r['raw_mb']:.1f} | {fmt(r['gzip_mb'], 1)} "
                      f"| {r['inspector_s']:.3f} | {r['page_kb']:.0f} | {r['issues_s']:.2f} | {r['post_s']:.3f} |",
                      flush=True)


if __name__ == "__main__":
    main()
