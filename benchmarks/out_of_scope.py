"""Out-of-scope benchmark: does the ``oos`` signal find utterances of intents nobody annotated?

Protocols (``benchmarks/cases.py``, the default encoder's cached vectors):

* **banking** — banking77 (``cases.banking`` defaults: 5% uniform label flips, 8% of the rows
  unannotated) with 10 or 20 whole intents held out as unknown (their rows unannotated),
  several seeds; the unannotated rows are scored: positives = the held-out intents' rows,
  negatives = the in-scope unannotated rows; once more with 30% of the in-scope rows
  unannotated (10 held out), where the unannotated share of the neighbours says less;
* **bundled** — the real export with each coarse intent held out in turn (its labels blanked)
  and 10% of the other annotated rows blanked as in-scope traffic; positives = the held-out
  intent's rows, negatives = those blanked in-scope rows (the export's own 193 unannotated rows
  stay unannotated but are not judged: their intents are unknown).

For each case, in the same run: the shipped signal (``OutOfScope().find`` on the case's
context), two ablations (``--no-ablation`` skips them) — the score without the transductive
evidence (the unannotated share of the neighbours) and with the logistic regression's maximum
softmax probability and energy added — and the baselines — the classifier's maximum softmax
probability (``default_classifier`` fitted on the annotated rows) and plain kNN distance
(1 - cosine similarity to the nearest annotated row). Reported: AUROC, AUPRC and the FPR at 95%
recall; the measured FPR of the candidates on in-scope unannotated rows next to the target;
the estimated out-of-scope share of the unannotated rows (with its interval) next to the true
share; and the candidate groups' purity (size-weighted share of each group's majority held-out
intent, in-scope false positives counting as impurity) and recall (share of each held-out
intent's rows that sit in a group it is the majority of, averaged over intents), with the
number of held-out intents recovered (a group of purity >= 0.8 holding >= half its rows); rows
whose intent is unknown (the bundled export's own unannotated rows) are left out of the purity.
The groups' baseline ("old"): the same candidates cut once at ``intent_spread`` (no second
cut of oversized groups at the calibrated distance), with the old verdict bar (the lower quartile
of the intent's own rows' similarity to its centroid instead of the median). "Verdicts right":
the share of grouped rows whose group's verdict is right — "new intent" for a group whose
majority is a held-out intent, "missing phrasing of <intent>" for one whose majority is that
in-scope intent's rows.

Run::

    .venv/bin/python benchmarks/out_of_scope.py             # banking 10/20 x 3 seeds + bundled (~10 min on 2 cores)
    .venv/bin/python benchmarks/out_of_scope.py --quick     # one small banking case (< 1 min)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from benchmarks.cases import Case, banking, bundled  # noqa: E402
from hl_debug.scoring.label_issues import default_classifier  # noqa: E402
from hl_debug.scoring.new_intents import (  # noqa: E402
    SPLIT_SIZE,
    describe_groups,
    group_candidates,
    intent_spread,
    typical_intent_size,
)
from hl_debug.scoring.out_of_scope import OutOfScopeDetector, top_k_known  # noqa: E402
from hl_debug.signals.out_of_scope import OutOfScope  # noqa: E402
from hl_debug.threads import limit_threads  # noqa: E402

log = logging.getLogger("benchmarks.out_of_scope")
METHODS = ("oos", "oos w/o unannotated share", "oos + LR evidence", "MSP (LR)", "kNN distance")


def fpr_at_recall(y: np.ndarray, s: np.ndarray, recall: float = 0.95) -> float:
    """False-positive rate at the lowest threshold reaching ``recall`` of the positives."""
    pos = np.sort(s[y == 1])
    thr = pos[int(np.floor((1 - recall) * len(pos)))]
    return float(np.mean(s[y == 0] >= thr))


def metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    return {"auroc": roc_auc_score(y, s), "auprc": average_precision_score(y, s), "fpr95": fpr_at_recall(y, s)}


def group_quality(truth: list[str | None], held: np.ndarray, group: np.ndarray) -> dict[str, float]:
    """Purity and recall of the candidate groups against the held-out intents."""
    truth_arr = np.array([t if h else f"in:{t}" for t, h in zip(truth, held)], dtype=object)
    groups = [g for g in np.unique(group) if g > 0]
    held_intents = sorted({t for t, h in zip(truth, held) if h})
    if not groups:
        return {"purity": float("nan"), "recall": 0.0, "recovered": 0, "n_groups": 0, "n_held": len(held_intents)}
    sizes, majority_hits, best = [], [], {t: 0.0 for t in held_intents}
    recovered = set()
    known = np.array([t is not None or h for t, h in zip(truth, held)])  # unknown truth: not judged
    for g in groups:
        members = truth_arr[(group == g) & known]
        if not len(members):
            continue
        values, counts = np.unique(members, return_counts=True)
        top = values[np.argmax(counts)]
        sizes.append(len(members))
        majority_hits.append(counts.max())
        if top in best:
            share = counts.max() / np.sum(truth_arr == top)
            best[top] = max(best[top], share)
            if counts.max() / len(members) >= 0.8 and share >= 0.5:
                recovered.add(top)
    return {"purity": float(np.sum(majority_hits) / np.sum(sizes)), "recall": float(np.mean(list(best.values()))),
            "recovered": len(recovered), "n_groups": len(groups), "n_held": len(held_intents)}


def verdicts_right(truth: list[str | None], held: np.ndarray, groups: list[dict], index: dict[int, int]) -> float:
    """Share of the grouped rows (truth known) whose group's verdict is right: "new intent" for a
    group whose majority is a held-out intent, "missing phrasing of <intent>" for a group whose
    majority is in-scope rows of that intent."""
    right = total = 0
    for g in groups:
        rows = [index[i] for i in json.loads(g["ids"]) if truth[index[i]] is not None or held[index[i]]]
        if not rows:
            continue
        names = np.array([f"in:{truth[r]}" if not held[r] else str(truth[r]) for r in rows])
        values, counts = np.unique(names, return_counts=True)
        top = str(values[np.argmax(counts)])
        ok = g["verdict"] == ("missing phrasing of " + top[3:] if top.startswith("in:") else "new intent")
        right += ok * len(rows)
        total += len(rows)
    return right / total if total else float("nan")


def evaluate(case: Case, positives: np.ndarray, negatives: np.ndarray, *, ablation: bool = True,
             caps: tuple[int, int] | None = None) -> dict:
    """Every method's figures on one case (``positives``/``negatives``: bool masks of rows).

    ``caps`` = (calibration rows, grouped rows): also score with the detector's pseudo
    out-of-scope rows capped at the first and its two-hop neighbour search on, and group the
    shipped candidates from a sample of the second (the at-scale approximations, forced to bite
    at this size)."""
    ctx = case.context()
    t0 = time.perf_counter()
    result = OutOfScope().find(ctx)
    seconds = time.perf_counter() - t0
    cols = result.columns or {}  # the oos table's columns, row i = the context's row i
    at = {int(i): k for k, i in enumerate(cols["id"])}
    rows = np.array([at[int(i)] for i in case.ids], dtype=np.int64)
    score = np.asarray(cols["oos_score"], dtype=float)[rows]
    cand = np.asarray(cols["is_candidate"])[rows].astype(bool)
    group = np.nan_to_num(np.asarray(cols["group_id"], dtype=float)[rows], nan=0.0).astype(np.int64)
    X, ann = case.vectors, case.annotated
    labels = np.array([v for v in case.labels if v is not None])
    with limit_threads(1):
        clf = default_classifier().fit(X[ann], labels)
    msp = 1.0 - clf.predict_proba(X).max(axis=1)
    _, nn_sim, _ = top_k_known(X, np.arange(len(X)), ann, 1, graph=ctx.neighbors(32))
    scores = {"oos": score, "MSP (LR)": msp, "kNN distance": 1.0 - nn_sim}
    if ablation:
        det = OutOfScopeDetector(use_unannotated_share=False).fit(X, ctx.y, graph=ctx.neighbors(32))
        scores["oos w/o unannotated share"] = det.scores_
        det = OutOfScopeDetector(classifier="default").fit(X, ctx.y, graph=ctx.neighbors(32))
        scores["oos + LR evidence"] = det.scores_
    keep = positives | negatives
    y = positives[keep].astype(int)
    out = {"case": case.name, "seconds": seconds,
           "methods": {m: metrics(y, s[keep]) for m, s in scores.items()}}
    unann = ~ann
    report = result.report
    # the grouping before the second cut (one average-linkage cut at intent_spread), same candidates
    members = np.flatnonzero(cand & unann)
    old = np.zeros(len(X), dtype=np.int64)
    old_of = group_candidates(X[members], threshold=intent_spread(X, ctx.y), min_size=3)
    old[members] = old_of + 1
    old_groups = describe_groups(ctx.vectors, ctx.texts, ctx.ids, members, old_of, y=ctx.y, classes=ctx.classes,
                                 phrasing_quantile=0.25)
    index = {int(i): j for j, i in enumerate(ctx.ids)}
    out.update({
        "fpr_measured": float(cand[negatives].mean()), "recall_measured": float(cand[positives].mean()),
        "fpr_target": report["target_fpr"], "recall_estimated": report.get("estimated_recall"),
        "share_true": float(positives[unann].mean()), "share": report["estimated_share"],
        "share_low": report["estimated_share_low"], "share_high": report["estimated_share_high"],
        "groups": group_quality(case.true, positives, group),
        "groups_old": group_quality(case.true, positives, old),
        "verdicts": verdicts_right(case.true, positives, result.groups, index),
        "verdicts_old": verdicts_right(case.true, positives, old_groups, index),
        "group_cut": report.get("group_cut"), "group_split_cut": report.get("group_split_cut"),
        "n_new_intent_verdicts": report.get("n_new_intents"), "n_pseudo": report.get("n_calibration_pseudo")})
    if caps is not None:
        det = OutOfScopeDetector(max_calibration_rows=caps[0], two_hops=True).fit(X, ctx.y, graph=ctx.neighbors(32))
        sampled = np.zeros(len(X), dtype=np.int64)
        sampled_of = group_candidates(X[members], threshold=report["group_cut"], min_size=3,
                                      fine_threshold=report["group_split_cut"],
                                      split_size=SPLIT_SIZE * typical_intent_size(ctx.y, len(members)),
                                      max_rows=min(caps[1], len(members)))
        sampled[members] = sampled_of + 1
        out["capped"] = {
            "caps": caps, "n_pseudo": len(det.calibration_scores_[1]), "n_members": len(members),
            "auroc": metrics(y, det.scores_[keep])["auroc"],
            "fpr_measured": float(det.candidates_[negatives].mean()),
            "recall_measured": float(det.candidates_[positives].mean()), "recall_estimated": det.tpr_,
            "groups": group_quality(case.true, positives, sampled)}
    return out


def print_capped(results: list[dict]) -> None:
    rs = [r for r in results if "capped" in r]
    if not rs:
        return
    print("\n| case | pseudo-OOS rows shipped / capped | AUROC shipped / capped | FPR measured shipped / capped "
          "| recall measured shipped / capped | recall est. capped | candidates grouped from | purity full / sampled "
          "| recall full / sampled | recovered full / sampled |")
    print("|---" * 10 + "|")
    for r in rs:
        c, g, gs = r["capped"], r["groups"], r["capped"]["groups"]
        print(f"| {r['case']} | {r['n_pseudo']} / {c['n_pseudo']} | {fmt(r['methods']['oos']['auroc'])} / "
              f"{fmt(c['auroc'])} | {fmt(r['fpr_measured'])} / {fmt(c['fpr_measured'])} | "
              f"{fmt(r['recall_measured'])} / {fmt(c['recall_measured'])} | {fmt(c['recall_estimated'])} | "
              f"{min(c['caps'][1], c['n_members'])} of {c['n_members']} | {fmt(g['purity'])} / {fmt(gs['purity'])} | "
              f"{fmt(g['recall'])} / {fmt(gs['recall'])} | {g['recovered']} / {gs['recovered']} of {g['n_held']} |")
    if len(rs) > 1:
        def mean(get) -> str:
            return fmt(float(np.mean([get(r) for r in rs])))
        print(f"| mean | | {mean(lambda r: r['methods']['oos']['auroc'])} / {mean(lambda r: r['capped']['auroc'])} | "
              f"{mean(lambda r: r['fpr_measured'])} / {mean(lambda r: r['capped']['fpr_measured'])} | "
              f"{mean(lambda r: r['recall_measured'])} / {mean(lambda r: r['capped']['recall_measured'])} | "
              f"{mean(lambda r: r['capped']['recall_estimated'])} | | "
              f"{mean(lambda r: r['groups']['purity'])} / {mean(lambda r: r['capped']['groups']['purity'])} | "
              f"{mean(lambda r: r['groups']['recall'])} / {mean(lambda r: r['capped']['groups']['recall'])} | |")


def banking_cases(holdouts: list[int], seeds: list[int], rows: int | None,
                  unannotated: float = 0.08) -> list[tuple[Case, np.ndarray, np.ndarray]]:
    out = []
    for h in holdouts:
        for seed in seeds:
            case = banking(seed=seed, holdout_intents=h, rows=rows, unannotated=unannotated)
            case.name = f"banking +{h} unknown, seed {seed}" + (f", {unannotated:.0%} unannotated"
                                                                 if unannotated != 0.08 else "")
            unann = ~case.annotated
            out.append((case, case.held_out & unann, unann & ~case.held_out))
    return out


def bundled_cases(sample: float = 0.1, seed: int = 0) -> list[tuple[Case, np.ndarray, np.ndarray]]:
    """The export with one coarse intent's labels blanked (positives) and ``sample`` of the
    other annotated rows blanked too (negatives: in-scope traffic whose intent is known); the
    export's own unannotated rows stay unannotated and are not judged (their intent is unknown,
    and some of them belong to the held-out intent)."""
    base = bundled()
    base_vectors = base.vectors
    rng = np.random.default_rng(seed)
    annotated = base.annotated
    out = []
    for intent in base.intents:
        held = np.array([v == intent for v in base.labels])
        negatives = annotated & ~held & (rng.random(len(base)) < sample)
        labels = [None if h or n else v for v, h, n in zip(base.labels, held, negatives)]
        case = dataclasses.replace(base, name=f"bundled -{intent}", labels=labels, held_out=held,
                                   _vectors=base_vectors)
        out.append((case, held, negatives))
    return out


def fmt(x: float | None, digits: int = 3) -> str:
    return "" if x is None or x != x else f"{x:.{digits}f}"


def print_tables(results: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    print("| case | " + " | ".join(f"{m} AUROC" for m in METHODS) + " | oos AUPRC | MSP AUPRC | kNN AUPRC | "
          "oos FPR@95 | MSP FPR@95 | kNN FPR@95 | s |")
    print("|---" * (len(METHODS) + 8) + "|")

    def line(name: str, rs: list[dict]) -> None:
        def mean(m: str, key: str) -> float:
            vals = [r["methods"][m][key] for r in rs if m in r["methods"]]
            return float(np.mean(vals)) if vals else float("nan")
        cells = [fmt(mean(m, "auroc")) for m in METHODS]
        cells += [fmt(mean(m, "auprc")) for m in ("oos", "MSP (LR)", "kNN distance")]
        cells += [fmt(mean(m, "fpr95")) for m in ("oos", "MSP (LR)", "kNN distance")]
        cells.append(fmt(float(np.mean([r["seconds"] for r in rs])), 1))
        print(f"| {name} | " + " | ".join(cells) + " |")

    for r in results:
        line(r["case"], [r])
    if len(results) > 1:
        line("mean", results)
    print("\n| case | FPR target | FPR measured | recall est. | recall measured | true share | est. share (95% CI) "
          "| groups | purity | recall | recovered | 'new intent' verdicts | cut / split cut "
          "| verdicts right | old groups | old purity | old recall | old recovered | old verdicts right |")
    print("|---" * 19 + "|")
    for r in results:
        g, o = r["groups"], r["groups_old"]
        print(f"| {r['case']} | {fmt(r['fpr_target'], 2)} | {fmt(r['fpr_measured'])} | {fmt(r['recall_estimated'])} "
              f"| {fmt(r['recall_measured'])} | {fmt(r['share_true'])} | {fmt(r['share'])} ({fmt(r['share_low'])}-"
              f"{fmt(r['share_high'])}) | {g['n_groups']} | {fmt(g['purity'])} | {fmt(g['recall'])} "
              f"| {g['recovered']}/{g['n_held']} | {r['n_new_intent_verdicts']} | {fmt(r['group_cut'])} / "
              f"{fmt(r['group_split_cut'])} | {fmt(r['verdicts'])} | {o['n_groups']} | {fmt(o['purity'])} "
              f"| {fmt(o['recall'])} | {o['recovered']}/{o['n_held']} | {fmt(r['verdicts_old'])} |")
    print_capped(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small banking case (4,000 rows, 10 unknown)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--holdouts", default="10,20")
    parser.add_argument("--no-bundled", action="store_true")
    parser.add_argument("--no-dense-unannotated", action="store_true",
                        help="skip the banking case with 30%% of the in-scope rows unannotated")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--capped", default="3000,1000", metavar="CAL,GROUP",
                        help="also score with at most CAL pseudo out-of-scope calibration rows and the two-hop "
                             "neighbour search, and group the "
                             "candidates from a sample of GROUP rows (the at-scale paths, forced to bite; '' skips)")
    args = parser.parse_args(argv)
    caps = tuple(int(v) for v in args.capped.split(",")) if args.capped else None
    logging.basicConfig(level=logging.WARNING)
    t0 = time.time()
    load = os.getloadavg()[0]
    print(f"# out-of-scope benchmark — {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"1-min load {load:.1f}")
    print(f"command: python benchmarks/out_of_scope.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    if args.quick:
        cases = banking_cases([10], [0], rows=4000)
        results = [evaluate(*c, ablation=not args.no_ablation, caps=caps) for c in cases]
        print_tables(results, "banking (quick: 4,000 rows)")
    else:
        holdouts = [int(h) for h in args.holdouts.split(",") if h]
        for h in holdouts:
            results = [evaluate(*c, ablation=not args.no_ablation, caps=caps) for c in banking_cases([h], list(range(args.seeds)),
                                                                                           rows=None)]
            print_tables(results, f"banking, {h} intents held out")
        if not args.no_dense_unannotated:
            cases = banking_cases([10], list(range(args.seeds)), rows=None, unannotated=0.3)
            print_tables([evaluate(*c, ablation=not args.no_ablation, caps=caps) for c in cases],
                         "banking, 10 intents held out, 30% of the in-scope rows unannotated")
        if not args.no_bundled:
            results = [evaluate(*c, ablation=not args.no_ablation, caps=caps) for c in bundled_cases()]
            print_tables(results, "bundled export, each coarse intent held out")
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
