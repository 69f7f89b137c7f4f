"""Memory of loading the signals' context (vectors, texts, labels, clusters, predictions).

    .venv/bin/python benchmarks/context_memory.py --db /tmp/m1/m4.db --legacy 9a3f30e

Each version loads the context of ``--db`` (a database the pipeline has embedded) in a fresh
process, ``--repeat`` times, and reports the load's wall time, its peak RSS (``ru_maxrss``),
the RSS right after it, and the RSS after glibc's ``malloc_trim(0)``: the gap between the last
two is freed memory the process still holds. ``--legacy REV`` also measures ``hl_debug/`` as
it was at git revision REV, in the same run (this machine is noisy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**30


def child(root: str, db: str) -> dict[str, float]:
    """One load in this process, for the hl_debug importable from ``root``."""
    import ctypes
    import resource
    import time

    sys.path.insert(0, root)
    from hl_debug.steps.signals import api_endpoint, load_context
    from hl_debug.storage import Store

    store = Store(db)
    t0 = time.perf_counter()
    context = load_context(store, encoder=store.get_meta("active_encoder"), api=api_endpoint(store, None))
    seconds = time.perf_counter() - t0
    after = rss_gib()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return {"rows": len(context), "seconds": seconds, "after": after, "trimmed": rss_gib(),
            "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "vectors": context.vectors.nbytes / 2**30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="an embedded hl-debug database")
    ap.add_argument("--legacy", metavar="REV", help="also measure hl_debug/ at this git revision")
    ap.add_argument("--repeat", type=int, default=1, help="fresh processes per version (medians shown)")
    ap.add_argument("--child", metavar="ROOT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.db)))
        return
    sys.path.insert(0, str(ROOT))
    from benchmarks.webapp_payload import checkout  # hl_debug/ (and webapp/) at a git revision

    with tempfile.TemporaryDirectory() as tmp:
        versions = ([(f"before ({args.legacy})", checkout(args.legacy, Path(tmp)))] if args.legacy else [])
        versions.append(("after", ROOT))
        print("| code | rows | load s | peak RSS GiB | RSS after GiB | after malloc_trim GiB | vectors GiB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, root in versions:
            runs = [json.loads(subprocess.run([sys.executable, __file__, "--db", args.db, "--child", str(root)],
                                              check=True, capture_output=True, text=True).stdout)
                    for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"| {name} | {med['rows']:,.0f} | {med['seconds']:.0f} | {med['peak']:.2f} | {med['after']:.2f} | "
                  f"{med['trimmed']:.2f} | {med['vectors']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
