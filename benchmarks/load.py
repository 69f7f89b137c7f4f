"""Load benchmark: ``hl-debug serve`` under concurrent users, before and after (issue 15.4).

Starts the server in a subprocess on a free loopback port (never anything else), fires
``--concurrency`` (200) concurrent GETs at every page and the main API routes, one route at a
time, then ``--posts`` (50) concurrent decisions on one row, and reports p50/p95 latency
and the error count per route — for the code at ``--before`` (default ``db44b86``, main's
start: Flask's development server, one request at a time) and for this checkout (waitress
with threads), in the same run, on the same database copy.

The decisions are then read back: each must be stored exactly once, and the
``previous_label`` of each must be the effective label the one before it left (a chain
in ``annotations`` order).

Databases are built once with ``hl-debug run`` and cached in ``~/.cache/hl-debug/bench/load``:
the bundled export, and a grown export (``benchmarks.cases.grown``) whose vectors come from
the benchmark cache (``cases.embed``), seeded into the database before ``run`` so the
pipeline does not re-embed.

Run:  python benchmarks/load.py [--rows 100000] [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("benchmarks.load")
BEFORE = "db44b86"
TOKEN = "bench-token"


def cache_dir() -> Path:
    from benchmarks.cases import cache_dir as bench_cache

    return bench_cache() / "load"


def _cli(db: Path, *args: str, root: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "hl_debug.cli", "--db", str(db), *args], cwd=root, env=env,
                          check=True, **kw)


def seed_vectors(db: Path, case) -> None:
    """Store ``case``'s cached vectors as the default encoder's embeddings (what ``embed`` would write)."""
    from benchmarks.cases import _encoder
    from hl_debug.domain import text_hash
    from hl_debug.storage import Store

    store = Store(db, create=False)
    try:
        by_hash = dict(zip((text_hash(t) for t in case.texts), case.vectors, strict=True))
        todo = sorted(set(store.texts_by_hash()) - store.embedded_hashes(_encoder().identity))
        import numpy as np

        if todo:
            store.save_embeddings(_encoder().identity, todo, np.stack([by_hash[h] for h in todo]))
    finally:
        store.close()


def build_db(rows: int | None, *, quick: bool = False) -> Path:
    """The cached database of the bundled export (``rows`` None) or of ``grown(rows)``, built
    with ``hl-debug ingest`` + seeded vectors + ``hl-debug run`` on first use."""
    from benchmarks import cases
    from benchmarks.make_scaled_export import write

    name = "bundled" if rows is None else f"grown-{rows}"
    db = cache_dir() / f"{name}.db"
    if db.exists():
        return db
    cache_dir().mkdir(parents=True, exist_ok=True)
    tmp = db.with_suffix(".building.db")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    if rows is None:
        export, case = cases.BUNDLED_EXPORT, cases.bundled(flip_rate=0.0)
    else:
        case = cases.grown(rows)
        export = cache_dir() / f"{name}.json.zip"
        write(case.records(), export)
    t0 = time.perf_counter()
    _cli(tmp, "ingest", str(export))
    seed_vectors(tmp, case)
    _cli(tmp, "run", str(export))
    _cli(tmp, "stats", capture_output=True)  # closes cleanly
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, db)
    model = tmp.with_name(tmp.stem + ".model")
    if model.exists():
        os.replace(model, db.with_name(db.stem + ".model"))
    log.info("built %s in %.0f s", db, time.perf_counter() - t0)
    return db


def synthetic_db(n: int, folder: Path) -> Path:
    """A small synthetic database (``webapp_payload.build``: no models), for ``--quick``."""
    from benchmarks.webapp_payload import build

    db = folder / f"synthetic-{n}.db"
    if not db.exists():
        build(db, n)
    return db


def checkout(rev: str, dest: Path) -> Path:
    """The package at git revision ``rev``, extracted into ``dest``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "webapp", "hl_debug", "pipelines"],
                             check=True, capture_output=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``hl-debug serve`` of the package under ``root`` on a loopback port, in a subprocess."""

    def __init__(self, root: Path, db: Path, log_path: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(root), "HL_TOKEN": "", "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "hl_debug.cli", "--db", str(db), "serve", "--host",
                                      "127.0.0.1", "--port", str(self.port), *extra],
                                     cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds until the server is warm: ``/api/health`` says it is no longer warming
        (the map's data and the inspector's rows prepared), or, for code without that route,
        ``/api/points`` answered (the map's payload built or read back)."""
        t0 = time.perf_counter()
        while True:
            status, _, body = fetch(self.base + "/api/health", timeout=timeout)
            if status == 200 and not json.loads(body or b"{}").get("warming", False):
                return time.perf_counter() - t0
            if status == 404 and fetch(self.base + "/api/points", timeout=timeout)[0] == 200:
                return time.perf_counter() - t0
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout:
                raise SystemExit(f"the server did not start (exit {self.proc.poll()}); see {self._log.name}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def fetch(url: str, *, body: dict | None = None, headers: dict | None = None,
          timeout: float = 120) -> tuple[int, float, bytes]:
    """``(status, seconds, body)`` of one request on a new connection (status 0: no answer)."""
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Accept-Encoding": "gzip", **(headers or {})}
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=hdrs, method="POST" if data is not None else "GET")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = r.read()
            return r.status, time.perf_counter() - t0, out
    except urllib.error.HTTPError as exc:
        out = exc.read()
        exc.close()
        return exc.code, time.perf_counter() - t0, out
    except (OSError, urllib.error.URLError):
        return 0, time.perf_counter() - t0, b""


def burst(jobs: list[tuple[str, dict | None, dict | None]], *, timeout: float) -> list[tuple[int, float]]:
    """All ``jobs`` (url, body, headers) at once, one thread and connection each: each one's
    ``(status, seconds from the common start to its complete response)``."""
    start = [0.0]
    gate = threading.Barrier(len(jobs) + 1)

    def one(job: tuple[str, dict | None, dict | None]) -> tuple[int, float]:
        gate.wait()
        status, _, _ = fetch(job[0], body=job[1], headers=job[2], timeout=timeout)
        return status, time.perf_counter() - start[0]

    with cf.ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(one, j) for j in jobs]
        start[0] = time.perf_counter()
        gate.wait()
        return [f.result() for f in futures]


def wait_idle(base: str, *, timeout: float) -> None:
    """Until a tiny request answers within half a second (the server has caught up)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        status, seconds, _ = fetch(base + "/api/labels", timeout=timeout)
        if status == 200 and seconds < 0.5:
            return
        time.sleep(1)


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def routes(db: Path, n: int, *, quick: bool = False) -> tuple[list[tuple[str, list[str]]], dict]:
    """``(name, paths)`` of every page and the main API routes: ``n`` paths each, the same
    one ``n`` times for a page or list, but ``n`` different rows for a per-row route (so a
    burst is ``n`` users looking at ``n`` rows, not one row ``n`` times); and the POST plan:
    the row every decision goes to, its effective label, the labels to cycle."""
    from hl_debug.storage import CLUSTERS, Store

    store = Store(db, create=False)
    try:
        ids = store.utterance_columns(("id",))["id"]
        intents = store.intents()
        decided = set(store.decided_labels())
        clusters = [c["cluster_id"] for c in store.table_rows(CLUSTERS, order="size")]
        target = next(i for i in ids[len(ids) // 2:] if i not in decided and store.effective_label(i))
        plan = {"id": target, "effective": store.effective_label(target),
                "labels": [x for x in intents if x != store.effective_label(target)][:5]}
    finally:
        store.close()
    step = max(1, len(ids) // n)
    rows = [ids[(k * step) % len(ids)] for k in range(n)]
    picks = [",".join(str(ids[(k * 7 + j * max(1, len(ids) // 200)) % len(ids)]) for j in range(200))
             for k in range(n)]
    words = ["card", "bill", "weather", "music", "alarm", "account", "transfer", "name"]
    same = lambda path: [path] * n  # noqa: E731
    pages = [("GET /", same("/")), ("GET /clusters", same("/clusters")), ("GET /issues", same("/issues")),
             ("GET /queue", same("/queue")), ("GET /discover", same("/discover")), ("GET /report", same("/report"))]
    api = [("GET /api/points", same("/api/points")),
           ("GET /api/utterances?ids= (200 ids, different per user)", [f"/api/utterances?ids={p}" for p in picks]),
           ("GET /api/utterances/<id> (a row per user)", [f"/api/utterances/{i}" for i in rows]),
           ("GET /api/neighbors/<id> (a row per user)", [f"/api/neighbors/{i}" for i in rows]),
           ("GET /api/search?q= (8 words)", [f"/api/search?q={words[k % len(words)]}" for k in range(n)]),
           ("GET /api/clusters", same("/api/clusters")),
           ("GET /api/clusters/<id> (a cluster per user)", [f"/api/clusters/{clusters[k % len(clusters)]}"
                                                           for k in range(n)] if clusters else same("/api/clusters/0")),
           ("GET /api/issues", same("/api/issues")), ("GET /api/queue", same("/api/queue")),
           ("GET /api/labels", same("/api/labels")),
           ("GET /api/confusion", same(f"/api/confusion?given={intents[0]}&predicted={intents[-1]}&split=all"))]
    if quick:
        return pages[:3] + api[:3] + api[-2:-1], plan
    return pages + api, plan


def check_chain(db: Path, plan: dict, n: int) -> dict:
    """The decisions on the plan's row: how many, how many distinct reviewers (``bench-NN``,
    when the code records them), and how many ``previous_label`` links are wrong."""
    from hl_debug.storage import Store

    store = Store(db, create=False)
    try:
        rows = store.annotations(plan["id"])
    finally:
        store.close()
    broken, before = 0, plan["effective"]
    for r in rows:
        broken += r["previous_label"] != before
        before = r["label"] if r["action"] != "skip" else before
    named = [r.get("reviewer") for r in rows if r.get("reviewer")]
    return {"stored": len(rows), "distinct_reviewers": len(set(named)), "named": len(named), "broken": broken,
            "expected": n}


def run_version(name: str, root: Path, db: Path, work: Path, *, concurrency: int, posts: int, quick: bool,
                timeout: float, only: list[str] | None = None) -> dict:
    """Every route's burst, then the POST burst, against a fresh copy of ``db`` served by ``root``."""
    copy = work / f"{name}-{db.name}"
    shutil.copyfile(db, copy)
    route_list, plan = routes(copy, concurrency, quick=quick)
    if only:
        route_list = [(label, paths) for label, paths in route_list if any(o in label for o in only)]
    server = Server(root, copy, work / f"{name}-{db.stem}.log")
    out: dict = {"routes": {}}
    try:
        out["ready_s"] = server.wait_ready()
        for label, paths in route_list:
            status, first, _ = fetch(server.base + paths[0], timeout=timeout)  # one alone: the build, if any
            res = burst([(server.base + p, None, None) for p in paths], timeout=timeout)
            times = [t for _, t in res]
            errors = sum(not 200 <= s < 400 for s, _ in res) + (not 200 <= status < 400)
            if any(s == 0 for s, _ in res):  # timed out: let the server finish them before the next route
                wait_idle(server.base, timeout=timeout)
            out["routes"][label] = {"p50": pct(times, 50), "p95": pct(times, 95), "errors": errors, "alone": first}
            log.info("%s %s: p50 %.3f p95 %.3f errors %d", name, label, out["routes"][label]["p50"],
                     out["routes"][label]["p95"], errors)
        jobs = [(server.base + "/api/annotations", {"id": plan["id"], "action": "relabel",
                                                    "label": plan["labels"][i % len(plan["labels"])]},
                 {"X-HL-Reviewer": f"bench-{i:02d}"}) for i in range(posts)]
        res = burst(jobs, timeout=timeout)
        times = [t for _, t in res]
        out["post"] = {"p50": pct(times, 50), "p95": pct(times, 95), "errors": sum(s != 201 for s, _ in res)}
        status, _, _ = fetch(server.base + "/issues", timeout=timeout)
        out["post"]["errors"] += status != 200  # the page after the writes
    finally:
        server.stop()
    out["post"].update(check_chain(copy, plan, posts))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return out


def fmt(v: float) -> str:
    return "–" if v != v else f"{v:.3f}"


def print_table(title: str, results: dict[str, dict], *, concurrency: int, posts: int) -> None:
    names = list(results)
    print(f"\n{title}\n")
    print("| route | " + " | ".join(f"{n}: alone (s) | {n}: p50 (s) | {n}: p95 (s) | {n}: errors" for n in names) + " |")
    print("|---|" + "---:|" * (4 * len(names)))
    first = results[names[-1]]["routes"]
    for route in first:
        cells = []
        for n in names:
            nan = float("nan")
            r = results[n]["routes"].get(route, {"alone": nan, "p50": nan, "p95": nan, "errors": "–"})
            cells += [fmt(r["alone"]), fmt(r["p50"]), fmt(r["p95"]), str(r["errors"])]
        print(f"| {route} ×{concurrency} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        p = results[n]["post"]
        cells += ["", fmt(p["p50"]), fmt(p["p95"]), str(p["errors"])]
    print(f"| POST /api/annotations ×{posts} (one row) | " + " | ".join(cells) + " |")
    for n in names:
        p = results[n]["post"]
        ok = p["stored"] == posts and p["broken"] == 0 and p["distinct_reviewers"] in (0, posts)
        print(f"\n{n}: {p['stored']} of {posts} decisions stored, {p['distinct_reviewers']} distinct reviewers "
              f"recorded, {p['broken']} wrong previous_label link(s){' (chain ok)' if ok else ''}; "
              f"ready after {results[n]['ready_s']:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description="hl-debug serve under concurrent load, before and after")
    ap.add_argument("--rows", type=int, nargs="*", default=[100_000],
                    help="grown export sizes to measure besides the bundled export (none: bundled only)")
    ap.add_argument("--no-bundled", action="store_true", help="skip the bundled export")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--posts", type=int, default=50)
    ap.add_argument("--before", default=BEFORE, help="git revision measured as 'before' (empty: skip)")
    ap.add_argument("--timeout", type=float, default=300, help="per request (s); a request past it is an error")
    ap.add_argument("--quick", action="store_true", help="a 300-row synthetic database, 8 concurrent requests")
    ap.add_argument("--only", action="append", default=[], metavar="TEXT",
                    help="measure only the routes whose name contains TEXT (repeatable; the POST burst always runs)")
    ap.add_argument("--build-only", action="store_true", help="build (or find) the cached databases and stop")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="hl-load-") as tmp:
        work = Path(tmp)
        if args.quick:
            args.concurrency, args.posts = min(args.concurrency, 8), min(args.posts, 6)
            dbs = [("synthetic 300", synthetic_db(300, work))]
        else:
            dbs = ([] if args.no_bundled else [("bundled 2,327", build_db(None))]) + \
                  [(f"grown {n:,}", build_db(n)) for n in args.rows]
        if args.build_only:
            print("\n".join(str(db) for _, db in dbs))
            return
        versions = ([(f"before ({args.before})", checkout(args.before, work / "before"))] if args.before else []) + \
                   [("after", ROOT)]
        load = os.getloadavg()
        print(f"load benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores")
        for title, db in dbs:
            results = {name: run_version(name.split()[0], root, db, work, concurrency=args.concurrency,
                                         posts=args.posts, quick=args.quick, timeout=args.timeout, only=args.only)
                       for name, root in versions}
            print_table(f"{title} rows", results, concurrency=args.concurrency, posts=args.posts)


if __name__ == "__main__":
    main()
