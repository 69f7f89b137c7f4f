"""The annotation queue measured by simulated annotation on banking77, and its coverage on the bundled export.

Protocol (banking77 through ``benchmarks/cases.py``, every row annotated with its true
intent, no planted flips):

1. ``banking(seed=s, flip_rate=0, unannotated=0)``: the training split is the *pool*, the
   validation + testing splits (about 2.6k rows, 20%) the *test set*, never queued.
2. ``--labelled L`` pool rows, drawn at random with seed ``s``, keep their labels: the project
   as it stands (L = 200 of ~10.5k: 2.6 rows per intent, some intents have none; L = 1000
   as a second, better-labelled cell). The rest of the pool is unannotated.
3. Each method orders the unannotated pool once. For N = 50, 100, 200 the top N get their
   true labels, the local model (``LocalIntentModel(calibration=None)``: logistic regression,
   C=10, on the same vectors) is retrained on the L + N rows and scored on the test set.
4. Methods: **hl-debug** — the shipped ``queue`` signal's ``find`` on a context of the pool
   (labels: the L rows); **random** — a seeded shuffle; **entropy** — highest entropy of
   the same logistic regression trained on the L rows; **farthest-first** — greedy k-center
   from the labelled rows (cosine distance), a reference; **hl-debug before** — the queue
   of commit ``081bcfa`` (uncertainty × coverage with MMR diversity), read from git.
5. Also reported: distinct true intents among each order's top 20 and top 50.

Bundled export (its 193 unannotated rows have no true intent, and the fine-grained topic
list the issue counted is not in the repository): a *topic* is a k-means cluster
(``--topics`` K, default 40, ``n_init=10``, seed 0) of the unannotated rows' vectors; the
figure is the number of distinct topics among each order's top 20 (random: mean of 1000
shuffles), with the topic count K varied as a check.

Example::

    python benchmarks/queue_simulation.py            # full: 5 seeds, L = 200 and 1000
    python benchmarks/queue_simulation.py --quick    # 2 seeds on 3,000 banking rows, L = 60
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cases import Case, banking, bundled  # noqa: E402

log = logging.getLogger("queue_simulation")
BEFORE_REV = "081bcfa"
METHODS = ("hl-debug", "random", "entropy", "farthest-first", "hl-debug before")


def _lr(C: float = 10.0):
    from hl_debug.models.intent_model import LocalIntentModel

    return LocalIntentModel(C=C, calibration=None)


def pool_context(case: Case, pool: np.ndarray, labelled: np.ndarray):
    """A :class:`SignalContext` of the pool rows, annotated where ``labelled`` (bool over pool)."""
    from hl_debug.neighbors import KnnMemo
    from hl_debug.signals.context import SignalContext

    labels = [case.true[i] if lab else None for i, lab in zip(pool, labelled)]
    return SignalContext(ids=case.ids[pool], texts=[case.texts[i] for i in pool], vectors=case.vectors[pool],
                         labels=labels, splits=["training" if lab else None for lab in labelled],
                         knn_memo=KnnMemo())


def order_hl_debug(context) -> np.ndarray:
    from hl_debug.signals.queue import Queue

    position = {int(i): p for p, i in enumerate(context.ids)}
    return np.array([position[r["id"]] for r in Queue().find(context).rows], dtype=np.int64)


def _before_module() -> types.ModuleType | None:
    """``hl_debug/scoring/queue.py`` as of :data:`BEFORE_REV`, or None without git."""
    try:
        src = subprocess.run(["git", "show", f"{BEFORE_REV}:hl_debug/scoring/queue.py"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType("queue_before")
    exec(compile(src, f"{BEFORE_REV}:hl_debug/scoring/queue.py", "exec"), mod.__dict__)
    return mod


def order_before(context, mod: types.ModuleType) -> np.ndarray:
    """The queue signal's order at :data:`BEFORE_REV` (its classifier, coverage and MMR ranking)."""
    from hl_debug.scoring.label_issues import default_classifier

    cand = np.flatnonzero(~context.annotated)
    rows = context.scorable
    clf = default_classifier().fit(context.vectors[rows], context.y[rows])
    probs = np.zeros((len(cand), len(context.classes)))
    probs[:, clf.classes_] = clf.predict_proba(context.vectors[cand])
    unc = mod.uncertainty_from_probs(probs, method="entropy")
    cov, _ = mod.coverage_scores(context.vectors, context.annotated, k=20, neighbors=context.neighbors(20)[0])
    ranked = mod.rank_queue(context.vectors[cand], uncertainty=np.clip(unc, 0, 1), coverage=cov[cand])
    return cand[ranked["order"]]


def order_entropy(context) -> np.ndarray:
    from hl_debug.scoring.queue import uncertainty_from_probs

    cand = np.flatnonzero(~context.annotated)
    rows = context.scorable
    clf = _lr().fit(context.vectors[rows], np.asarray(context.labels, dtype=object)[rows])
    unc = uncertainty_from_probs(clf.predict_proba(context.vectors[cand]), method="entropy")
    return cand[np.argsort(-unc, kind="stable")]


def order_farthest_first(X: np.ndarray, labelled: np.ndarray, n: int) -> np.ndarray:
    """Greedy k-center: each pick is the unlabelled row farthest (cosine) from every labelled or picked row."""
    dist = 1.0 - (X @ X[labelled].T).max(axis=1) if labelled.any() else np.full(len(X), 2.0)
    dist[labelled] = -np.inf
    out = []
    for _ in range(min(n, int((~labelled).sum()))):
        i = int(np.argmax(dist))
        out.append(i)
        dist = np.minimum(dist, 1.0 - X @ X[i])
        dist[i] = -np.inf
        dist[labelled] = -np.inf
    return np.array(out, dtype=np.int64)


def simulate(seed: int, *, rows: int | None, labelled: int, ns: list[int], methods: list[str],
             before: types.ModuleType | None) -> dict[str, dict]:
    """One seed: each method's test accuracy at every N and intents in its top 20/50."""
    case = banking(seed=seed, flip_rate=0.0, unannotated=0.0, rows=rows)
    splits = np.array(case.splits, dtype=object)
    pool, test = np.flatnonzero(splits == "training"), np.flatnonzero(splits != "training")
    X, true = case.vectors, np.array(case.true, dtype=object)
    lab = np.zeros(len(pool), dtype=bool)
    lab[np.random.default_rng(seed).choice(len(pool), labelled, replace=False)] = True
    context = pool_context(case, pool, lab)
    context.build_graph(32)  # the run's kNN graph, shared by the methods that read it (not timed)

    def accuracy(extra: np.ndarray) -> float:
        train = pool[np.concatenate([np.flatnonzero(lab), extra])]
        return float((_lr().fit(X[train], true[train]).predict(X[test]) == true[test]).mean())

    out: dict[str, dict] = {"start": {"acc": accuracy(np.zeros(0, dtype=np.int64))}}
    for name in methods:
        t = time.perf_counter()
        if name == "hl-debug":
            order = order_hl_debug(context)
        elif name == "random":
            order = np.random.default_rng(1000 + seed).permutation(np.flatnonzero(~lab))
        elif name == "entropy":
            order = order_entropy(context)
        elif name == "farthest-first":
            order = order_farthest_first(X[pool], lab, max(ns + [50]))
        elif name == "hl-debug before":
            if before is None:
                continue
            order = order_before(context, before)
        else:
            raise SystemExit(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
        seconds = time.perf_counter() - t
        out[name] = {"acc": {n: accuracy(order[:n]) for n in ns}, "seconds": seconds,
                     **{f"intents{n}": len(set(true[pool[order[:n]]])) for n in (20, 50)}}
        log.info("seed %d L=%d %s: %s (%.1f s)", seed, labelled, name,
                 " ".join(f"{a:.3f}" for a in out[name]["acc"].values()), seconds)
    return out


def banking_table(results: list[dict], ns: list[int], methods: list[str]) -> str:
    head = "| method | " + " | ".join(f"acc @ N={n}" for n in ns) + " | intents in top 20 | top 50 | order s |"
    lines = [head, "|" + "---|" * (len(ns) + 4)]
    start = [r["start"]["acc"] for r in results]
    lines.append(f"| (no new labels) | {np.mean(start):.3f} ± {np.std(start):.3f} |" + " |" * (len(ns) + 2))
    for name in methods:
        got = [r[name] for r in results if name in r]
        if not got:
            continue
        cells = [f"{np.mean([g['acc'][n] for g in got]):.3f} ± {np.std([g['acc'][n] for g in got]):.3f}"
                 for n in ns]
        cells += [f"{np.mean([g[f'intents{n}'] for g in got]):.1f}" for n in (20, 50)]
        cells.append(f"{np.mean([g['seconds'] for g in got]):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bundled_table(ks: list[int], before: types.ModuleType | None) -> str:
    """Distinct k-means topics in the top 20 of each order on the bundled export's unannotated rows."""
    from sklearn.cluster import KMeans

    case = bundled()
    context = case.context()
    cand = np.flatnonzero(~context.annotated)
    t = time.perf_counter()
    orders = {"hl-debug": order_hl_debug(context)}
    seconds = time.perf_counter() - t
    orders["farthest-first"] = order_farthest_first(context.vectors, context.annotated, 20)
    orders["entropy"] = order_entropy(context)
    if before is not None:
        orders["hl-debug before"] = order_before(context, before)
    rng = np.random.default_rng(0)
    shuffles = [rng.permutation(cand) for _ in range(1000)]
    lines = ["| topics (k-means K) | hl-debug | random (mean of 1000) | entropy | farthest-first | hl-debug before |",
             "|---|---|---|---|---|---|"]
    for k in ks:
        topic = np.full(len(context), -1)
        topic[cand] = KMeans(k, n_init=10, random_state=0).fit(context.vectors[cand]).labels_

        def distinct(order: np.ndarray, topic: np.ndarray = topic) -> int:
            return len(set(topic[order[:20]].tolist()))

        cells = [str(distinct(orders["hl-debug"])), f"{np.mean([distinct(o) for o in shuffles]):.1f}",
                 str(distinct(orders["entropy"])), str(distinct(orders["farthest-first"])),
                 str(distinct(orders["hl-debug before"])) if "hl-debug before" in orders else "-"]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nhl-debug queue on the bundled export: {len(cand)} rows in {seconds:.2f} s"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds on 3,000 banking rows, L = 60")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--labelled", default="200,1000", help="comma-separated labelled pool sizes L")
    ap.add_argument("--ns", default="50,100,200")
    ap.add_argument("--rows", type=int, default=None, help="banking77 rows (default all 13,083)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--topics", default="30,40,60")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.quick:
        args.seeds, args.rows, args.labelled = 2, 3000, "60"
    ns = [int(x) for x in args.ns.split(",")]
    methods = args.methods.split(",")
    before = _before_module() if "hl-debug before" in methods else None
    t0 = time.perf_counter()
    for labelled in (int(x) for x in args.labelled.split(",")):
        results = [simulate(s, rows=args.rows, labelled=labelled, ns=ns, methods=methods, before=before)
                   for s in range(args.seeds)]
        print(f"\n### banking77, L = {labelled} labelled pool rows, {args.seeds} seeds"
              f"{f', {args.rows} rows' if args.rows else ''} (test accuracy mean ± std)\n")
        print(banking_table(results, ns, methods))
    print("\n### bundled export: distinct topics in the top 20\n")
    print(bundled_table([int(k) for k in args.topics.split(",")], before))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
