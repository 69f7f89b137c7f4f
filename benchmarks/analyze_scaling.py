"""Time the analyze step's UMAPs: numba compilation, the on-disk JIT cache, side-by-side UMAPs.

Each variant fits :class:`~hl_debug.models.map.MapAnalyzer` on a database's embeddings in a
fresh Python process (so numba compiles as it would in ``hl-debug analyze``) and prints the
fit time and a digest of the map, the clustering projection and the labels, which must be
the same for every variant:

* ``cache-cold``: the cache directory holds what umap-learn and pynndescent cache themselves
  (as an installed copy has after its first run) but none of
  :data:`~hl_debug.models.map.UMAP_JIT_FUNCTIONS` (their entries are deleted first), so
  those compile: the first ``hl-debug analyze`` on a machine;
* ``cache-warm``: JIT cache on, filled by the previous variant;
* ``concurrent``: warm cache, the map's UMAP in a second process.

The code before issue #7 (no JIT cache at all: the ``before`` rows of ``RESULTS.md``) is not
measured here any more; it needs a checkout of that revision.

Example::

    python benchmarks/analyze_scaling.py --db /tmp/bench-real.db
    python benchmarks/analyze_scaling.py --synthetic 300 --variants cache-warm --numba-cache existing  # quick
    python benchmarks/analyze_scaling.py --db /tmp/bench-20000.db --variants cache-warm,concurrent
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("cache-cold", "cache-warm", "concurrent")


def fit_once(db: str, variant: str) -> dict:
    """Fit in this process (run through ``--child``); returns time and output digest."""
    import numpy as np

    from hl_debug.models.map import MapAnalyzer
    from hl_debug.neighbors import knn_graph
    from hl_debug.steps.train import resolve_encoder_identity
    from hl_debug.storage import Store

    store = Store(db, create=False)
    _, X = store.load_embeddings(resolve_encoder_identity(store))  # the encoder `hl-debug embed` recorded
    store.close()
    knn = knn_graph(X, 15)
    t = time.perf_counter()
    m = MapAnalyzer(n_jobs=2 if variant == "concurrent" else 1).fit(X, knn=knn)
    seconds = time.perf_counter() - t
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes()
                                     for a in (m.embedding_, m.reduced_, m.labels_))).hexdigest()[:16]
    return {"variant": variant, "rows": len(X), "fit_s": round(seconds, 1), "digest": digest,
            "n_clusters": m.n_clusters_, "noise_share": round(m.noise_share_, 4)}


def forget_jit_functions(cache_dir: str) -> int:
    """Delete the cache entries of :data:`~hl_debug.models.map.UMAP_JIT_FUNCTIONS` from numba's
    cache folder (``<module>.<function>-<line>.pyXY.nbi/.nbc``); returns how many files."""
    from hl_debug.models.map import UMAP_JIT_FUNCTIONS

    gone = 0
    for module_name, name in UMAP_JIT_FUNCTIONS:
        for path in Path(cache_dir).rglob(f"{module_name.rsplit('.', 1)[-1]}.{name}-*.nb[ic]"):
            path.unlink()
            gone += 1
    return gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="a database with embeddings (nothing is written)")
    parser.add_argument("--synthetic", type=int, metavar="N",
                        help="instead, a synthetic database of N utterances with stand-in vectors (a quick check)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--numba-cache", choices=("fresh", "existing"), default="fresh",
                        help="fresh: a new, empty cache folder (default); existing: numba's usual one, as "
                             "it is (no cache-cold; a quick check of cache-warm and concurrent)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(fit_once(args.db, args.child)))
        return 0
    if bool(args.db) == bool(args.synthetic):
        parser.error("give exactly one of --db or --synthetic N")
    if args.numba_cache == "existing" and "cache-cold" in args.variants.split(","):
        parser.error("cache-cold needs --numba-cache fresh")
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; valid: {', '.join(VARIANTS)}")
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        fresh = args.numba_cache == "fresh"
        db = args.db
        if db is None:
            from benchmarks.synthetic import ingested_store

            db = str(Path(cache_dir) / f"synthetic-{args.synthetic}.db")
            ingested_store(Path(db), args.synthetic, embed=True).close()
        env = {**os.environ, **({"NUMBA_CACHE_DIR": cache_dir} if fresh else {}), "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

        def child(variant: str) -> str:
            proc = subprocess.run([sys.executable, __file__, "--db", db, "--child", variant], env=env, cwd=ROOT,
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"the {variant} fit failed:\n{proc.stderr[-3000:]}")
            return proc.stdout

        print("| rows | variant | fit s | process s | digest | clusters | noise |\n|---:|---|---:|---:|---|---:|---:|")
        # numba fills the same cache directory with the functions umap-learn and pynndescent
        # already mark cache=True (compiled once per install in real use): fill it first.
        if fresh:
            child("cache-cold")
        for variant in variants:
            if variant == "cache-cold":
                forget_jit_functions(cache_dir)
            t = time.perf_counter()
            r = json.loads(child(variant).strip().splitlines()[-1])
            print(f"| {r['rows']:,} | {variant} | {r['fit_s']} | {time.perf_counter() - t:.1f} | {r['digest']} | "
                  f"{r['n_clusters']} | {100 * r['noise_share']:.1f}% |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
