"""The signals step with the local engine's folds one after the other against on threads, same run.

:meth:`LocalEngine.parallel <hl_debug.engines.LocalEngine.parallel>` runs the out-of-fold
folds of ``cross_val_predict`` (the label-issue detector's classifier) on joblib's threading
backend, one thread per core, each with one BLAS thread, while the vectors are under
:data:`~hl_debug.engines.FOLD_THREADS_MAX_BYTES`. This reruns the whole signals step
(``force``) on a database that ``hl-debug run`` has filled, alternating
``LocalEngine(fold_threads=1)`` (the engine before) and the default engine, and prints the
wall and CPU seconds of each run and whether every signal table came out the same.

Run::

    hl-debug --db /tmp/many/a.db run /tmp/many/many-intents-23k.json.zip   # once
    python benchmarks/fold_threads.py --db /tmp/many/a.db --repeat 2
    python benchmarks/fold_threads.py --quick   # a tiny synthetic database (the smoke test)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hl_debug.engines import LocalEngine  # noqa: E402
from hl_debug.signals.registry import all_signals  # noqa: E402
from hl_debug.steps.signals import signals  # noqa: E402
from hl_debug.storage import Store  # noqa: E402

log = logging.getLogger("benchmarks.fold_threads")


def _tables(store: Store) -> dict[str, Any]:
    """Every signal table's rows, to check both engines wrote the same."""
    return {s.table: store.table_rows(s.table) for s in all_signals() if s.table is not None}


def run(store: Store, repeat: int) -> list[dict[str, Any]]:
    """Alternate the two engines ``repeat`` times each on ``store``; one row per run."""
    rows, first = [], None
    for i in range(repeat):
        for arm, engine in (("one by one", LocalEngine(fold_threads=1)), ("threads", LocalEngine())):
            wall, cpu = time.perf_counter(), time.process_time()
            signals(store, force=True, progress=False, engine=engine)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            tables = _tables(store)
            first = tables if first is None else first
            rows.append({"arm": arm, "repeat": i + 1, "wall": wall, "cpu": cpu, "same": tables == first,
                         "threads": engine.fold_threads})
            log.info("%s #%d: %.1f s wall, %.1f s CPU", arm, i + 1, wall, cpu)
    return rows


def _quick_db(folder: Path) -> Store:
    """A tiny database filled by the pipeline with the fake encoder (the smoke test's)."""
    from benchmarks.synthetic import write_export
    from pipelines.full import run_pipeline
    from tests.fakes import FakeEncoder

    export = write_export(folder / "tiny.json", 300, seed=0)
    store = Store(folder / "quick.db")
    run_pipeline(store, export, encoder=FakeEncoder(), n_epochs=30, progress=False, model_dir=str(folder / "model"))
    return store


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, help="a database `hl-debug run` has filled")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="a tiny synthetic database, one repeat")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.quick and args.db is None:
        p.error("give --db (a database `hl-debug run` has filled) or --quick")
    with tempfile.TemporaryDirectory() as tmp:
        store = _quick_db(Path(tmp)) if args.quick else Store(args.db)
        try:
            n = store.count_utterances()
            rows = run(store, 1 if args.quick else args.repeat)
        finally:
            store.close()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}" + (f", {n} utterances" if n else ""))
    print("| engine | run | threads | signals wall (s) | CPU (s) | tables as the first run |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['repeat']} | {r['threads']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
              f"{'same' if r['same'] else 'DIFFERENT'} |")
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
