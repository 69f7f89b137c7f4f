"""Time the analyze step's UMAPs: numba compilation, the on-disk JIT cache, side-by-side UMAPs.

Each variant fits :class:`~hl_debug.models.map.MapAnalyzer` on a database's embeddings in a
fresh Python process (so numba compiles as it would in ``hl-debug analyze``) and prints the
fit time and a digest of the map, the clustering projection and the labels, which must be
the same for every variant:

* ``before``: no JIT cache, the two UMAPs one after the other (the code before issue #7);
  an unreported ``before`` run first fills the cache directory with what umap-learn and
  pynndescent cache themselves, as an installed copy has after its first run;
* ``cache-cold``: JIT cache on, empty cache directory (first run on a machine);
* ``cache-warm``: JIT cache on, filled by the previous variant;
* ``concurrent``: warm cache, the map's UMAP in a second process.

Example::

    python benchmarks/analyze_scaling.py --db /tmp/bench-real.db
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
VARIANTS = ("before", "cache-cold", "cache-warm", "concurrent")


def fit_once(db: str, variant: str) -> dict:
    """Fit in this process (run through ``--child``); returns time and output digest."""
    import numpy as np

    from hl_debug.models import map as an
    from hl_debug.models.neighbors import knn_graph
    from hl_debug.storage import Store

    if variant == "before":
        an.UMAP_JIT_FUNCTIONS = ()
    store = Store(db)
    _, X = store.load_embeddings(store.get_meta("active_encoder"))
    knn = knn_graph(X, 15)
    t = time.perf_counter()
    m = an.MapAnalyzer(n_jobs=2 if variant == "concurrent" else 1).fit(X, knn=knn)
    seconds = time.perf_counter() - t
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes()
                                     for a in (m.embedding_, m.reduced_, m.labels_))).hexdigest()[:16]
    return {"variant": variant, "rows": len(X), "fit_s": round(seconds, 1), "digest": digest,
            "n_clusters": m.n_clusters_, "noise_share": round(m.noise_share_, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a database with embeddings (a copy: nothing is written)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(fit_once(args.db, args.child)))
        return 0
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; valid: {', '.join(VARIANTS)}")
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1"}
        print("| rows | variant | fit s | process s | digest | clusters | noise |\n|---:|---|---:|---:|---|---:|---:|")
        # numba fills the same cache directory with the functions umap-learn and pynndescent
        # already mark cache=True (compiled once per install in real use): fill it first.
        subprocess.run([sys.executable, __file__, "--db", args.db, "--child", "before"], env=env, cwd=ROOT,
                       check=True, capture_output=True)
        for variant in variants:
            t = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--db", args.db, "--child", variant], env=env, cwd=ROOT,
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"| {r['rows']:,} | {variant} | {r['fit_s']} | {time.perf_counter() - t:.1f} | {r['digest']} | "
                  f"{r['n_clusters']} | {100 * r['noise_share']:.1f}% |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
