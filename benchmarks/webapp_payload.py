"""How the web app scales: time and size of the map's data and the inspector at N utterances.

Usage::

    .venv/bin/python benchmarks/webapp_payload.py --sizes 2327 20000 100000
    .venv/bin/python benchmarks/webapp_payload.py --sizes 2327 100000 --legacy f70892b~1   # before/after

Builds a synthetic database per size (:func:`build`: a synthetic export ingested, random
answers through the predict step, random points, clusters, issues and queue rows written
through the store's public API — no models needed), then times, through Flask's test client: ``GET /api/points`` (the
map's data: the first request after start, then again, a reload with ``If-None-Match``,
and the first one after a review decision; bytes sent without and with
``Accept-Encoding: gzip``), ``GET /api/utterances?ids=`` for 200 ids (what a lasso
selection fetches), ``GET /`` (the map page's HTML, which must not grow with N),
``GET /issues`` and ``POST /api/annotations``. Prints one Markdown table row per size.

``--legacy REV`` also measures the web app as it was at git revision ``REV`` (its
``webapp/`` and ``hl_debug/`` extracted into a temporary folder, run in a subprocess) on
the same databases, one row each, so before and after come from one run on one machine.

``--db PATH`` times every page and API route on a real database instead (a fresh copy per
code version; the original is never written): each route's first request on a new app
(nothing cached) and the best of two more, the review POSTs and the routes after them, and
how long after the app is created (``hl-debug serve`` starting) the map's data and the
report are answered when asked for at once (and the map's data again on a second start, when
the first one's warm-up has stored it). One Markdown row per route and code version::

    .venv/bin/python benchmarks/webapp_payload.py --db /tmp/hl-debug-bench/bench-100000.db --legacy 9aadaf9

``--routes-synthetic N`` does the same on a synthetic database of N utterances. Quick checks::

    .venv/bin/python benchmarks/webapp_payload.py --sizes 300
    .venv/bin/python benchmarks/webapp_payload.py --routes-synthetic 300
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

def build(path: Path, n: int, seed: int = 0) -> None:
    """A synthetic database of ``n`` utterances for the web app, made through the public API:
    a synthetic export ingested, random answers through the predict step (so it is the active
    endpoint), and random points, clusters, neighbours, label issues and queue rows written with
    :meth:`~hl_debug.storage.StoreProtocol.replace_table` (no models needed)."""
    from benchmarks.synthetic import INTENTS, RandomAnswers, ingested_store
    from hl_debug.signals.label_issues import ISSUES
    from hl_debug.signals.queue import QUEUE
    from hl_debug.steps.predict import predict
    from hl_debug.storage import CLUSTERS, NEIGHBORS, POINTS

    rng = random.Random(seed)
    store = ingested_store(path, n, seed)
    predict(store, source=RandomAnswers("bench", seed=seed), progress=False)
    cols = store.utterance_columns(("id", "intent"))
    rows = [{"id": i, "intent": intent} for i, intent in zip(cols["id"], cols["intent"], strict=True)]
    store.replace_table(POINTS, [{"id": r["id"], "x": rng.gauss(0, 5), "y": rng.gauss(0, 5),
                                  "cluster_id": rng.randrange(-1, 60), "outlier_score": rng.random()} for r in rows])
    sizes: dict[int, int] = {}
    for point in store.table_rows(POINTS):
        sizes[point["cluster_id"]] = sizes.get(point["cluster_id"], 0) + 1
    store.replace_table(CLUSTERS, [{"cluster_id": c, "size": size, "n_annotated": size, "n_unannotated": 0,
                                    "majority_intent": rng.choice(INTENTS), "purity": rng.random(),
                                    "label_counts": "{}", "usage_counts": "{}", "keywords": "[]"}
                                   for c, size in sorted(sizes.items()) if c >= 0])
    ids = [r["id"] for r in rows]
    store.replace_table(NEIGHBORS, [{"id": i, "rank": k, "neighbor_id": rng.choice(ids), "similarity": rng.random()}
                                    for i in ids for k in (1, 2, 3)])
    store.replace_table(ISSUES, [{"id": r["id"], "rank": k, "score": rng.random(), "given_label": r["intent"],
                                  "suggested_label": rng.choice(INTENTS), "flagged": 0, "reason": "bench"}
                                 for k, r in enumerate(x for x in rows if x["intent"])])
    store.replace_table(QUEUE, [{"id": r["id"], "rank": k, "score": rng.random(), "predicted_label": INTENTS[0],
                                 "reason": "bench"} for k, r in enumerate(x for x in rows if not x["intent"])])
    store.close()


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    """Fastest of ``repeat`` runs of ``fn`` and its last result (benchmarks._timing; imported from
    this checkout even under ``--root``: the older tree holds only webapp/ and hl_debug/)."""
    from benchmarks._timing import best_of

    return best_of(repeat, fn)


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


def measure_elsewhere(root: Path, db: Path, n: int, *, routes: bool = False) -> dict:
    """:func:`measure` (or :func:`measure_routes`) in a subprocess that imports ``webapp`` from ``root``."""
    cmd = [sys.executable, __file__, "--root", str(root), "--measure", str(db), "--sizes", str(n)]
    proc = subprocess.run(cmd + (["--routes"] if routes else []), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"measuring {db} with the web app of {root} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def route_list(db: Path) -> list[tuple[str, str, dict | None]]:
    """``(name, path, POST body or None)`` of every page and API route, with ids from ``db``."""
    from hl_debug.storage import CLUSTERS, Store

    store = Store(db, create=False)
    ids = store.utterance_columns(("id",))["id"]
    intents = store.intents()[:2]
    biggest = store.table_rows(CLUSTERS, order="size", limit=1)
    cluster = biggest[0]["cluster_id"] if biggest else -1
    store.close()
    pick = ",".join(str(i) for i in ids[:: max(1, len(ids) // 200)][:200])
    one = ids[len(ids) // 3]
    cell = f"given={intents[0]}&predicted={intents[-1]}"
    return [
        ("GET /api/points", "/api/points", None), ("GET /", "/", None), ("GET /clusters", "/clusters", None),
        ("GET /clusters?sort=size", "/clusters?sort=size", None), ("GET /issues", "/issues", None),
        ("GET /issues?page=100", "/issues?page=100", None), ("GET /queue", "/queue", None),
        *[(f"GET /report?split={sp}", f"/report?split={sp}", None)
          for sp in ("evaluation", "testing", "validation", "training", "all")],
        ("GET /api/confusion", f"/api/confusion?{cell}&split=all", None),
        ("GET /api/utterances (200 ids)", f"/api/utterances?ids={pick}", None),
        ("GET /api/utterances/<id>", f"/api/utterances/{one}", None),
        ("GET /api/neighbors/<id>", f"/api/neighbors/{one}", None),
        ("GET /api/search?q=bill", "/api/search?q=bill", None),
        ("GET /api/search (no match)", "/api/search?q=zqxj", None),
        ("GET /api/clusters", "/api/clusters", None), ("GET /api/clusters/<id>", f"/api/clusters/{cluster}", None),
        ("GET /api/issues", "/api/issues", None), ("GET /api/queue", "/api/queue", None),
        ("GET /api/labels", "/api/labels", None),
        ("POST relabel", "/api/annotations", {"id": one, "action": "relabel", "label": intents[-1]}),
        ("POST skip", "/api/annotations", {"id": ids[1], "action": "skip"}),
        ("GET /api/points after a decision", "/api/points", None),
        ("GET /report after a decision", "/report", None),
        ("GET /issues after a decision", "/issues", None),
    ]


def measure_routes(db: Path) -> dict[str, list[float]]:
    """``{route: [first (s), again (s)]}`` for :func:`route_list`, plus the start-up waits."""
    from webapp import create_app

    try:
        from webapp import warm
    except ImportError:  # an older revision (--legacy) that warms inside create_app, with no handle
        warm = None
    out: dict[str, list[float]] = {}
    for name, path in (("start -> /api/points answered", "/api/points"), ("start -> /report answered", "/report"),
                       ("restart -> /api/points answered", "/api/points")):  # after the first start's warm-up
        t0 = time.perf_counter()  # a serving app warms its caches at start, as create_app does
        app = create_app({"DB": str(db)} if warm is None else {"DB": str(db), "WARM_MAP": False})
        warming = warm(app) if warm is not None else None
        client = app.test_client()
        assert client.get(path, headers={"Accept-Encoding": "gzip"}).status_code == 200
        out[name] = [time.perf_counter() - t0, float("nan")]
        if warming is not None:
            warming.join()  # let the warm-up finish before the next measurement
    client = create_app({"DB": str(db), "TESTING": True}).test_client()
    gz = {"Accept-Encoding": "gzip"}
    for name, path, body in route_list(db):
        if body is not None:
            t0 = time.perf_counter()
            r = client.post(path, json=body)
            out[name] = [time.perf_counter() - t0, float("nan")]
            assert r.status_code == 201, (name, r.status_code)
            continue
        times = []
        for _ in range(3 if "after a decision" not in name else 1):
            t0 = time.perf_counter()
            r = client.get(path, headers=gz)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, (name, r.status_code, r.get_data(as_text=True)[:200])
        out[name] = [times[0], min(times[1:]) if len(times) > 1 else float("nan")]
        out[name + " KB"] = [len(r.data) / 1e3]
    return out


def print_routes(db: Path, legacy: str | None, tmp: Path) -> None:
    runs = ([(f"before ({legacy})", checkout(legacy, tmp))] if legacy else []) + [("after", ROOT)]
    results = []
    for name, root in runs:
        copy = tmp / f"routes-{len(results)}.db"
        shutil.copyfile(db, copy)  # a fresh copy each: the POSTs write decisions
        for suffix in ("-wal", "-shm"):
            Path(str(copy) + suffix).unlink(missing_ok=True)
        results.append((name, measure_elsewhere(root, copy, 0, routes=True)))
        copy.unlink()
    names = [k for k in results[-1][1] if not k.endswith(" KB")]
    head = " | ".join(f"{n}: first (s) | {n}: again (s)" for n, _ in results)
    print(f"| route | {head} | sent, gzipped (KB) |")
    print("|---|" + "---:|" * (2 * len(results) + 1))
    for route in names:
        cells = " | ".join(f"{fmt(r.get(route, [float('nan')] * 2)[0], 3)} | {fmt(r.get(route, [float('nan')] * 2)[1], 3)}"
                           for _, r in results)
        size = results[-1][1].get(route + " KB")
        print(f"| {route} | {cells} | {fmt(size[0], 0) if size else '–'} |", flush=True)


def fmt(v: float, digits: int) -> str:
    return "–" if v != v else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description="web app payload and latency at several sizes")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2327, 20000, 100000])
    ap.add_argument("--legacy", metavar="REV", help="also measure the web app at this git revision")
    ap.add_argument("--root", help=argparse.SUPPRESS)  # internal: import webapp from here
    ap.add_argument("--db", type=Path, help="time every route on a copy of this database instead")
    ap.add_argument("--routes-synthetic", type=int, metavar="N",
                    help="time every route on a synthetic database of N utterances (as --db)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this database, print JSON
    ap.add_argument("--routes", action="store_true", help=argparse.SUPPRESS)  # internal: with --measure
    args = ap.parse_args()
    if args.measure:
        result = measure_routes(Path(args.measure)) if args.routes else measure(Path(args.measure), args.sizes[0])
        print(json.dumps(result))
        return
    if args.db or args.routes_synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            db = args.db
            if db is None:
                db = Path(tmp) / f"synthetic-{args.routes_synthetic}.db"
                build(db, args.routes_synthetic)
            print_routes(db, args.legacy, Path(tmp))
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
