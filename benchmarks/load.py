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

import logging
import os
import subprocess
import sys
import time
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
    log.info("built %s in %.0f s", db, time.perf_counter() - t0)
    return db


if __name__ == "__main__" and "--build-only" in sys.argv:
    logging.basicConfig(level=logging.INFO)
    i = sys.argv.index("--build-only")
    arg = sys.argv[i + 1] if len(sys.argv) > i + 1 else "bundled"
    print(build_db(None if arg == "bundled" else int(arg)))
    sys.exit(0)
