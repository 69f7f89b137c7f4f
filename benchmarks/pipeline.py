"""Time each step of ``hl-debug run`` and its peak memory, cold and warm, at several sizes.

For each size N the export is the real one (N = real) or grown from it with
``make_scaled_export.py``. Each scenario runs in a fresh process (so model loading is
counted and peak RSS is that run's own):

* ``cold``   - a new database;
* ``warm``   - the same export again, nothing changed;
* ``warm1%`` - 1% of the rows' texts changed.

Prints a Markdown table (per-step seconds, total, peak RSS) under a line with the date, the
machine, the command and the load average, ready to replace the "Pipeline timings" table of
``benchmarks/RESULTS.md`` by hand (the page is curated: nothing is appended to it).

Example::

    python benchmarks/pipeline.py --sizes real,20000
    python benchmarks/pipeline.py --sizes 300 --scenarios cold   # a quick check
    python benchmarks/pipeline.py --export /tmp/many-intents-23k.json.zip --scenarios cold --baseline HEAD~3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "chatbot_intent_classifier_data.json.zip"
STEPS = ("ingest", "embed", "predict", "analyze", "signals", "web")  # the pipeline's order

_CHILD = r"""
import json, resource, sys, time
try:
    from hl_debug.storage import Store
except ImportError:  # a --baseline revision from before the storage package (hl_debug/store.py)
    from hl_debug.store import Store
from pipelines.full import run_pipeline
t0 = time.perf_counter()
store = Store(sys.argv[1])
summaries = run_pipeline(store, sys.argv[2], progress=False)
total = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
peak_children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print("@@RESULT@@" + json.dumps({"summaries": summaries, "total_s": total,
                                  "peak_rss_mb": max(peak_mb, peak_children_mb)}, default=str))
"""


def run_child(db: Path, export: Path, code: Path = ROOT) -> dict:
    """Run the pipeline in a fresh process on the code checked out at ``code``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(db), str(export)], cwd=code, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pipeline failed on {export}:\n{proc.stderr[-4000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("@@RESULT@@"))
    return json.loads(line[len("@@RESULT@@"):])


def change_texts(export: Path, out: Path, share: float, seed: int = 0) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.make_scaled_export import write
    from hl_debug.steps.ingest import read_export

    records = read_export(export)
    rng = random.Random(seed)
    for rec in rng.sample(records, max(1, int(share * len(records)))):
        data = json.loads(rec["data"])
        data["text"] = data["text"] + " " + rng.choice(["please", "now", "thanks", "today"])
        rec["data"] = json.dumps(data)
    write(records, out)


def make_export(size: str, workdir: Path) -> Path:
    if size == "real":
        return REAL
    if not size.isdigit():  # --export: a file, used as is
        return Path(size)
    out = workdir / f"scaled-{size}.json.zip"
    if not out.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_scaled_export.py"), "--rows", size,
                        "--out", str(out), "--seed", "0"], check=True)
    return out


def checkout(ref: str, workdir: Path) -> Path:
    """A detached worktree of ``ref`` (the baseline code), made once."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    path = workdir / f"baseline-{sha}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def clean_db(db: Path) -> None:
    import shutil

    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    model_dir = db.with_suffix(".model")
    if model_dir.exists():
        shutil.rmtree(model_dir)


def row(size: str, scenario: str, result: dict) -> str:
    per = {s["step"]: s for s in result["summaries"]}
    cells = []
    for step in STEPS:
        s = per.get(step)
        cells.append("—" if s is None else f"{s['seconds']:.1f}" + (" (skip)" if s.get("skipped") else ""))
    return (f"| {size} | {scenario} | " + " | ".join(cells)
            + f" | {result['total_s']:.1f} | {result['peak_rss_mb']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="real,20000", help="comma-separated: real and/or row counts")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hl-debug-bench")
    ap.add_argument("--scenarios", default="cold,warm,changed",
                    help="comma-separated subset of cold, warm, changed (warm 1%% changed)")
    ap.add_argument("--export", type=Path, default=None, metavar="FILE",
                    help="time this export file (as is) instead of --sizes")
    ap.add_argument("--baseline", default=None, metavar="GIT_REF",
                    help="also time the code at this git revision (in a worktree), in the same run")
    ap.add_argument("--baseline-dir", type=Path, default=None, metavar="DIR",
                    help="like --baseline, on a copy of the baseline code already in DIR "
                         "(e.g. `git archive REF | tar -x -C DIR`)")
    ap.add_argument("--write", action="store_true", help=argparse.SUPPRESS)  # gone: RESULTS.md is curated
    args = ap.parse_args(argv)
    if args.write:
        ap.error("--write no longer appends to benchmarks/RESULTS.md (a curated page): run without it and "
                 "replace the page's table with the printed one")
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    lines = ["| N | scenario | " + " | ".join(STEPS) + " | total s | peak RSS MB |",
             "|---|---|" + "---|" * len(STEPS) + "---|---|"]
    print("\n".join(lines), flush=True)
    speedups: list[str] = []
    base_name = args.baseline_dir.name if args.baseline_dir is not None else args.baseline
    sizes = [str(args.export)] if args.export is not None else args.sizes.split(",")
    for size in sizes:
        export = make_export(size, args.workdir)
        versions = [("", ROOT)]
        if args.baseline_dir is not None:
            versions.insert(0, (f" [baseline {base_name}]", args.baseline_dir.resolve()))
        elif args.baseline:
            versions.insert(0, (f" [baseline {base_name}]", checkout(args.baseline, args.workdir)))
        totals = {}
        for label, code in versions:
            db = args.workdir / f"bench-{Path(size).name}{'-base' if label else ''}.db"
            clean_db(db)
            wanted = args.scenarios.split(",")
            for scenario, exp in (("cold", export), ("warm", export)):
                if scenario in wanted:
                    result = run_child(db, exp, code)
                    totals[(label, scenario)] = result["total_s"]
                    lines.append(row(size, scenario + label, result))
                    print(lines[-1], flush=True)
            if "changed" in wanted:
                changed = args.workdir / f"changed-{Path(size).name}.json.zip"
                change_texts(export, changed, 0.01)
                result = run_child(db, changed, code)
                totals[(label, "changed")] = result["total_s"]
                lines.append(row(size, "warm 1% changed" + label, result))
                print(lines[-1], flush=True)
        if base_name:
            base = f" [baseline {base_name}]"
            for scenario in args.scenarios.split(","):
                if (base, scenario) in totals and ("", scenario) in totals:
                    ratio = totals[(base, scenario)] / max(totals[("", scenario)], 1e-9)
                    speedups.append(f"N={size} {scenario}: {ratio:.2f}x faster than the baseline")
    command = " ".join(["python benchmarks/pipeline.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\n({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"`{command}`; 1-min load average before: {load_before:.1f}, after: {os.getloadavg()[0]:.1f})")
    for x in speedups:
        print(x)
    return 0


if __name__ == "__main__":
    sys.exit(main())
