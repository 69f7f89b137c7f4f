"""Label-noise benchmark: does hl-debug rank planted label errors above cleanlab, and are its counts honest?

Every cell is a :mod:`benchmarks.cases` case with planted flips and known truth:
banking77 with 2/5/10% uniform and confusable flips, the bundled export grown to 20k rows
(3% flips), and the bundled export with 5% planted uniform flips. In each cell, in the same
run, with the same vectors and the same out-of-fold logistic regression (5-fold), the
methods ranked are:

* **hl-debug** — :class:`~hl_debug.scoring.label_detector.LabelIssueDetector` (the shipped
  default: stacking learnt on synthetic flips, never below its best component there);
* **cleanlab self-conf.** — ``get_label_quality_scores(method="self_confidence")`` on the
  detector's own out-of-fold probabilities (the standard confident-learning ranking);
* **fixed blend** — the previous detector's ranking, the rank mean of self-confidence and
  normalised margin of the evidence average, from the same components;
* **entropy** of the out-of-fold probabilities, and **random**.

Reported: AUPRC (average precision), AUROC and precision at k (k = number of planted flips).
Then the counts: the planted errors against hl-debug's estimated number of errors (with its
90% interval), cleanlab's confident-joint count (``find_label_issues``, the same
probabilities) and the previous detector's count (``combine="blend"``: its posteriors' sum);
the flagged rows and their real vs estimated precision and recall. Truth is the planted flips.
By default (``--base clean``) the flips are planted into a *clean base*: banking77 or the
bundled export without the rows cleanlab suspects on a TF-IDF and on a sentence-vector logistic
regression (:mod:`benchmarks.clean_base`), so the bases' own mistakes do not count as right
rows; ``--base original`` keeps them, ``--base both`` runs and prints both. Every cell also runs
the detector on its base without flips (once per family) and states the truth both as
"planted" and as "planted + that estimate".

Run::

    python benchmarks/label_noise.py            # every cell, clean base (about 10 min on 2 busy cores)
    python benchmarks/label_noise.py --base both --no-blend-detector   # clean and original bases (about 30 min)
    python benchmarks/label_noise.py --quick    # 3,000 banking rows, 5% uniform, and the bundled cell (< 1 min)
    python benchmarks/label_noise.py --cells banking-confusable-0.05,bundled-0.05 --no-blend-detector
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from scipy.stats import entropy  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from benchmarks import cases  # noqa: E402
from hl_debug.scoring.label_detector import LabelIssueDetector  # noqa: E402
from hl_debug.scoring.label_issues import cleanlab_scores, encode_labels, issue_scores  # noqa: E402
from hl_debug.scoring.remaining import errors_remaining  # noqa: E402

log = logging.getLogger("label_noise")

ALL_CELLS = tuple(f"banking-{mode}-{rate}" for mode in ("uniform", "confusable") for rate in ("0.02", "0.05", "0.10")
                  ) + ("banking-grouped-0.05", "grown-20000", "bundled-0.05")
QUICK_CELLS = ("banking-uniform-0.05@3000", "banking-grouped-0.05@3000", "bundled-0.05")


def grouped_case(rate: float, *, rows: int | None = None, seed: int = 0, group_rows: int = 12,
                 clean_base: bool = False) -> cases.Case:
    """banking77 with *grouped* flips, as real annotation mistakes are: whole sub-topics of an
    intent carry one confusable intent's label.

    The annotated rows of a randomly drawn intent are split into sub-topics (k-means on the
    vectors, about ``group_rows`` rows each); one sub-topic, all its rows, is relabelled to
    the intent's most similar other intent (TF-IDF centroids, as the ``confusable`` cells);
    repeated, a sub-topic at most once, until ``rate`` of the annotated rows are flipped. The
    detector's own synthetic flips never plant this pattern (its ``grouped`` kind, when used,
    takes a row and its nearest same-label neighbours, not k-means sub-topics).
    """
    from dataclasses import replace

    from sklearn.cluster import KMeans

    base = cases.banking(flip_rate=0.0, rows=rows, seed=seed, clean_base=clean_base)
    sim_intents, sim = cases._banking_similarity()
    code = {name: i for i, name in enumerate(sim_intents)}
    ann = np.flatnonzero(base.annotated)
    labels = list(base.labels)
    target = int(round(rate * len(ann)))
    rng = np.random.default_rng(seed)
    by_intent = {name: ann[[labels[i] == name for i in ann]] for name in base.intents}
    groups = []
    for name, members in by_intent.items():
        k = max(2, len(members) // group_rows)
        sub = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(base.vectors[members])
        s = sim[code[name]].copy()
        s[code[name]] = -np.inf
        groups += [(members[sub == g], sim_intents[int(s.argmax())]) for g in range(k)]
    flipped = np.zeros(len(base), dtype=bool)
    for g in rng.permutation(len(groups)):
        if flipped.sum() >= target:
            break
        members, other = groups[g]
        members = members[: target - int(flipped.sum())]
        for i in members:
            labels[i] = other
        flipped[members] = True
    return replace(base, name=f"banking grouped {rate:.0%}", labels=labels, flipped=flipped,
                   truth={**base.truth, "flip_rate": rate, "mode": "grouped", "seed": seed}, _vectors=base._vectors)


def load_cell(cell: str, *, clean_base: bool = True, flips: bool = True) -> cases.Case:
    """``banking-<mode>-<rate>[@rows]`` (mode ``uniform``, ``confusable`` or ``grouped``),
    ``grown-<rows>`` or ``bundled-<rate>``; on the clean base (:mod:`benchmarks.clean_base`)
    or the original one; ``flips=False``: the same base without planted flips."""
    name, _, rows = cell.partition("@")
    kind, *rest = name.split("-")
    n, cb = int(rows) if rows else None, clean_base
    if kind == "banking" and rest[0] == "grouped":
        return grouped_case(float(rest[1]) if flips else 0.0, rows=n, clean_base=cb)
    if kind == "banking":
        return cases.banking(flip_mode=rest[0], flip_rate=float(rest[1]) if flips else 0.0, rows=n, clean_base=cb)
    if kind == "grown":
        return cases.grown(int(rest[0]), flip_rate=0.03 if flips else 0.0, clean_base=cb)
    if kind == "bundled":
        return cases.bundled(flip_rate=float(rest[0]) if flips else 0.0, clean_base=cb)
    raise SystemExit(f"unknown cell {cell!r}; known: {', '.join(ALL_CELLS)}")


def arrays(case: cases.Case) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Vectors, label indices and planted-flip mask of the annotated rows; number of classes."""
    m = case.annotated
    classes = case.intents
    y = encode_labels([v for v, a in zip(case.labels, m) if a], classes)
    return case.vectors[m], y, case.flipped[m], len(classes)


def metrics(truth: np.ndarray, score: np.ndarray) -> dict[str, float]:
    k = int(truth.sum())
    top = np.argsort(-score, kind="stable")[:k]
    return {"auprc": float(average_precision_score(truth, score)), "auroc": float(roc_auc_score(truth, score)),
            "p_at_k": float(truth[top].mean())}


def counts(det: LabelIssueDetector, truth: np.ndarray, known: np.ndarray | None = None) -> dict[str, Any]:
    """Estimated vs real counts; ``known`` (rows whose status is known) adds the flagged
    rows' precision with the unknown-status rows left out."""
    f = det.flagged_
    n_true = int(truth.sum())
    out: dict[str, Any] = {"estimated": det.estimated_errors_, "low": det.estimated_errors_low_, "high": det.estimated_errors_high_,
           "flagged": int(f.sum()), "precision": float(truth[f].mean()) if f.any() else float("nan"),
           "precision_est": det.estimated_precision_,
           "recall": float(truth[f].sum() / n_true) if n_true else float("nan"), "recall_est": det.estimated_recall_}
    if known is not None and (f & known).any():
        out["precision_known"] = float(truth[f & known].mean())
    if det.combination_ is not None:
        out["count_errors"] = det.combination_.count_errors_
        out["em_estimated"] = det.em_estimated_errors_
        out["confident_joint"] = det.confident_joint_count_
        out["response"] = det.count_response_
    return out


_CLEAN: dict[str, dict] = {}


DETECTOR: dict = {}  # extra LabelIssueDetector parameters (--synthetic-kinds)


def clean_run(cell: str, seed: int, clean_base: bool) -> dict | None:
    """The detector on the same data without planted flips (banking, grown, bundled; once each):
    its estimate of the data's own errors, and the ids cleanlab's ``find_label_issues``
    suspects there — rows whose real status is unknown."""
    family = cell.split("-")[0]
    if family not in ("banking", "bundled", "grown"):
        return None
    rows = cell.partition("@")[2]
    key = (cell if family == "grown" else family + rows) + ("/clean" if clean_base else "")
    if key not in _CLEAN:
        case = load_cell(cell, clean_base=clean_base, flips=False)
        X, y, _, K = arrays(case)
        det = LabelIssueDetector(random_state=seed, use_api=False, **DETECTOR).fit(X, y, n_classes=K)
        _CLEAN[key] = {"estimate": det.estimated_errors_,
                       "suspects": set(case.ids[case.annotated][det.cleanlab_issues_].tolist())}
    return _CLEAN[key]


def run_cell(cell: str, *, blend_detector: bool, seed: int = 0, clean_base: bool = True) -> dict:
    t0 = time.perf_counter()
    case = load_cell(cell, clean_base=clean_base)
    X, y, truth, K = arrays(case)
    clean = clean_run(cell, seed, clean_base)
    det = LabelIssueDetector(random_state=seed, use_api=False, **DETECTOR).fit(X, y, n_classes=K)
    fit_s = time.perf_counter() - t0
    assert det.pred_probs_ is not None and det.combination_ is not None
    rng = np.random.default_rng(seed)
    scores = {
        "hl-debug": det.scores_,
        "cleanlab self-conf.": -cleanlab_scores(y, det.pred_probs_),
        "fixed blend (previous)": issue_scores(y, det.distribution_),
        "entropy": entropy(np.clip(det.pred_probs_, 1e-12, 1), axis=1),
        "random": rng.random(len(y)),
    }
    row = {"cell": cell, "name": case.name, "base": "clean" if clean_base else "original",
           "removed": case.truth.get("clean_base", {}).get("suspects"), "n": len(y), "intents": K, "planted": int(truth.sum()),
           "fit_s": round(fit_s, 1), "choice": det.combination_.choice_,
           "synthetic_auprc": det.combination_.synthetic_auprc_,
           "ranking": {m: metrics(truth, s) for m, s in scores.items()},
           "ranking_known": {},
           "cleanlab_count": int(det.cleanlab_issues_.sum())}
    if blend_detector:
        old = LabelIssueDetector(random_state=seed, use_api=False, combine="blend").fit(X, y, n_classes=K)
        row["blend_counts"] = counts(old, truth)
    known = None
    if clean is not None:
        row["clean_estimate"] = clean["estimate"]
        known = truth | ~np.isin(case.ids[case.annotated], list(clean["suspects"]))
        row["n_unknown"] = int((~known).sum())
        row["ranking_known"] = {m: metrics(truth[known], s[known]) for m, s in scores.items()}
    row["counts"] = counts(det, truth, known)
    row["review"] = review_loop(det, truth)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    r = row["ranking"]
    log.info("%-28s %-8s AUPRC hl-debug %.3f  cleanlab %.3f  blend %.3f (%s)  errors %d est %.0f  %.0fs", cell,
             row["base"], r["hl-debug"]["auprc"], r["cleanlab self-conf."]["auprc"], r["fixed blend (previous)"]["auprc"],
             row["choice"], row["planted"], row["counts"]["estimated"], row["seconds"])
    return row


REVIEW_K = (0, 100, 300)


def review_loop(det: LabelIssueDetector, truth: np.ndarray) -> list[dict]:
    """A simulated reviewer working down the ranking (changing a label iff it was planted
    wrong): after K decisions, the planted errors left against
    :func:`~hl_debug.scoring.remaining.errors_remaining`, plain and recalibrated by the
    decisions' live precision."""
    order = np.argsort(-det.scores_, kind="stable").tolist()
    bias = (det.estimated_errors_high_ - det.estimated_errors_low_) / 2 / max(det.estimated_errors_, 1e-9)
    out = []
    for K in REVIEW_K:
        seen = order[:K]
        decided = {i: bool(truth[i]) for i in seen}
        plain = errors_remaining(det.posterior_, decided, order=seen, relative_bias=bias)
        recal = errors_remaining(det.posterior_, decided, order=seen, relative_bias=bias, recalibrate=True)
        out.append({"K": K, "left": int(truth.sum() - truth[seen].sum()), "plain": plain["estimated"],
                    "low": plain["low"], "high": plain["high"], "recalibrated": recal["estimated"],
                    "live_precision": plain["live_precision"]})
    return out


def review_table(runs: list[dict]) -> str:
    lines = ["| cell | K | planted errors left | estimate [interval] | recalibrated by live precision | "
             "live precision |", "|---|---|---|---|---|---|"]
    within = {"plain": 0, "recalibrated": 0}
    for run in runs:
        for r in run["review"]:
            for key in within:
                within[key] += r["left"] > 0 and abs(r[key] - r["left"]) <= 0.2 * r["left"]
            lp = f"{r['live_precision']:.2f}" if r["live_precision"] is not None else ""
            lines.append(f"| {run['name']} | {r['K']} | {r['left']} | {r['plain']:.0f} [{r['low']:.0f}, "
                         f"{r['high']:.0f}] ({_rel(r['plain'], r['left'])}) | {r['recalibrated']:.0f} "
                         f"({_rel(r['recalibrated'], r['left'])}) | {lp} |")
    n = sum(len(run["review"]) for run in runs)
    lines.append(f"\nWithin ±20% of the planted errors left: plain {within['plain']} of {n}, recalibrated "
                 f"{within['recalibrated']} of {n}.")
    return "\n".join(lines)


def ranking_table(runs: list[dict]) -> str:
    lines = ["| cell | method | AUPRC | AUROC | P@k | AUPRC, unknown-status rows left out |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        for method, m in run["ranking"].items():
            bold = "**" if method == "hl-debug" else ""
            known = run["ranking_known"].get(method)
            known_cell = f"{known['auprc']:.3f}" if known else ""
            lines.append(f"| {run['name']} | {bold}{method}{bold} | {m['auprc']:.3f} | {m['auroc']:.3f} | "
                         f"{m['p_at_k']:.3f} | {known_cell} |")
    gaps = [r["ranking"]["hl-debug"]["auprc"] - r["ranking"]["cleanlab self-conf."]["auprc"] for r in runs]
    lines.append(f"\nhl-debug − cleanlab AUPRC: mean {np.mean(gaps):+.3f}, min {min(gaps):+.3f}; "
                 f"hl-debug ≥ cleanlab in {sum(g >= 0 for g in gaps)} of {len(gaps)} cells. Combination chosen: "
                 + ", ".join(f"{r['name']}: {r['choice']}" for r in runs) + ".")
    return "\n".join(lines)


def _rel(est: float, true: float) -> str:
    return f"{(est - true) / true:+.0%}" if true else "n/a"


def counts_table(runs: list[dict]) -> str:
    lines = ["| cell | true errors | hl-debug estimate [90% interval] | estimate − clean data's estimate | "
             "confident joint (previous count) | its response to flips | EM count | cleanlab count | "
             "previous detector | flagged | precision real / est. | recall real / est. | precision, unknown left out |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        c, true = run["counts"], run["planted"]
        truth = f"{true}"
        increment = ""
        if "clean_estimate" in run:
            both = true + run["clean_estimate"]
            truth += f" (+{run['clean_estimate']:.0f} genuine est. = {both:.0f})"
            inc = c["estimated"] - run["clean_estimate"]
            increment = f"{inc:.0f} ({_rel(inc, true)})"
        cj = c.get("confident_joint")
        cj_cell = f"{cj} ({_rel(cj, true)})" if cj is not None else ""
        resp = f"{c['response']:.2f}" if c.get("response") is not None else ""
        known = f"{c['precision_known']:.2f}" if "precision_known" in c else ""
        old = run.get("blend_counts")
        old_cell = f"{old['estimated']:.0f} ({_rel(old['estimated'], true)})" if old else ""
        lines.append(
            f"| {run['name']} | {truth} | {c['estimated']:.0f} [{c['low']:.0f}, {c['high']:.0f}] "
            f"({_rel(c['estimated'], true)}) | {increment} | {cj_cell} | {resp} | "
            f"{c['em_estimated']:.0f} ({_rel(c['em_estimated'], true)}) | "
            f"{run['cleanlab_count']} ({_rel(run['cleanlab_count'], true)}) | "
            f"{old_cell} | {c['flagged']} | {c['precision']:.2f} / {c['precision_est']:.2f} | "
            f"{c['recall']:.2f} / {c['recall_est']:.2f} | {known} |")
        if old:
            lines.append(f"| {run['name']} (previous detector) | | | | | | | | | {old['flagged']} | "
                         f"{old['precision']:.2f} / {old['precision_est']:.2f} | "
                         f"{old['recall']:.2f} / {old['recall_est']:.2f} | |")

    def ok(est: float, true: float) -> bool:
        return bool(true) and abs(est - true) <= 0.2 * true

    n = len(runs)
    inc = [r for r in runs if "clean_estimate" in r]
    lines.append(f"\nEstimate − the clean data's estimate within ±20% of the planted flips: "
                 f"{sum(ok(r['counts']['estimated'] - r['clean_estimate'], r['planted']) for r in inc)} of {len(inc)}; "
                 "precision with the unknown-status rows left out within ±20% of the estimate: "
                 f"{sum(ok(r['counts']['precision_est'], r['counts']['precision_known']) for r in inc if 'precision_known' in r['counts'])}"
                 f" of {len(inc)}.")
    lines.append(f"\nWithin ±20% (relative) of the truth (planted flips): estimated total "
                 f"{sum(ok(r['counts']['estimated'], r['planted']) for r in runs)} of {n}, estimated precision "
                 f"{sum(ok(r['counts']['precision_est'], r['counts']['precision']) for r in runs)} of {n}, "
                 f"estimated recall {sum(ok(r['counts']['recall_est'], r['counts']['recall']) for r in runs)} of {n}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", default=None, help=f"comma-separated cells (default all: {', '.join(ALL_CELLS)})")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_CELLS)}, no previous detector")
    ap.add_argument("--no-blend-detector", action="store_true", help="skip fitting the previous detector")
    ap.add_argument("--seed", type=int, default=0, help="detector seed")
    ap.add_argument("--synthetic-kinds", default=None,
                    help="the detector's synthetic noise kinds, comma-separated (default: its own)")
    ap.add_argument("--stacker-solver", choices=("lbfgs", "newton-cholesky"), default="newton-cholesky",
                    help="the stacker's solver: lbfgs is the one before newton-cholesky (the default)")
    ap.add_argument("--base", choices=("clean", "original", "both"), default="clean",
                    help="plant flips into the clean base (suspected genuine errors dropped), the original, or both")
    ap.add_argument("--json", type=Path, default=None, help="write per-cell results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.synthetic_kinds:
        kinds = tuple(args.synthetic_kinds.split(","))
        DETECTOR.update(synthetic_kinds=kinds, n_synthetic=len(kinds))
    if args.stacker_solver == "lbfgs":
        from benchmarks.stacker_solver import lbfgs_stacker

        DETECTOR.update(meta_model=lbfgs_stacker())
    cells = args.cells.split(",") if args.cells else list(QUICK_CELLS if args.quick else ALL_CELLS)
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    bases = ("clean", "original") if args.base == "both" else (args.base,)
    runs = [run_cell(c, blend_detector=not (args.quick or args.no_blend_detector), seed=args.seed,
                     clean_base=base == "clean") for base in bases for c in cells]
    for base in bases:
        some = [r for r in runs if r["base"] == base]
        print(f"## {base} base\n")
        if base == "clean":
            print("Removed from the bases (suspects per view): " + "; ".join(
                f"{r['name']}: {r['removed']}" for r in some) + "\n")
        print(ranking_table(some))
        print()
        print(counts_table(some))
        print()
        print(review_table(some))
        print()
    print(f"\n{len(runs)} cells, total {time.perf_counter() - t0:.0f} s, load average {load:.2f} at start, "
          f"{time.strftime('%Y-%m-%d')}.")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
