"""Review-loop benchmark: does reviewing the flagged label issues, then retraining, improve the model?

On banking77 with planted label flips (:func:`benchmarks.cases.banking`; the issue's cell is
5% uniform flips, the headline, over several seeds; 10% uniform and 10% confusable flips are
extra cells where the flips cost the model more), a simulated reviewer works down hl-debug's
ranked label-issue list (the shipped :class:`~hl_debug.scoring.label_detector.LabelIssueDetector`,
ranked by its score, as the ``label_issues`` table is): for each row it accepts the suggested
label when the row was truly flipped and keeps the given label otherwise. After K = 0, 100, 300
decisions the local model is retrained on the effective labels with the shipped training-set
rule (:func:`hl_debug.steps.retrain.training_mask`: training rows and newly labelled rows, out
of scope excluded) and the shipped model (:class:`~hl_debug.models.intent_model.LocalIntentModel`
with its defaults), and scored on the held-out validation + testing rows against their CLEAN
labels. Arms, in the same run with the same vectors and model:

* **flagged** — the reviewer works down the flagged list (every split);
* **random** (baseline) — the reviewer decides K rows drawn at random among the annotated rows;
* **flagged, training rows first** — the same flagged list with its training rows first (a fix
  of a validation or testing row does not change the retrained model), each part by score;
* **flagged, unreviewed flags left out** (K = 300) — as *flagged*, and the retrain also leaves
  out the training rows still flagged (posterior >= the detector's threshold) and not reviewed
  yet, as cleanlab's clean learning prunes suspected label issues (``hl-debug retrain
  --leave-out-flagged``, :func:`hl_debug.steps.retrain.suspected_rows`);
* **oracle** (baseline) — every planted flip fixed (to its true label): the most any review can gain;
* **oracle, flagged errors only** — every planted flip the detector flags fixed, the rest left:
  the most a review of the flagged list can gain, however long.

Recovery: the share of the oracle's accuracy gain an arm recovers,
``(acc(arm) - acc(K=0)) / (acc(oracle) - acc(K=0))``, pooled over the cell's seeds, with a
paired bootstrap interval (:func:`hl_debug.scoring.compare.recovered_share`: the three models
scored on the same resampled rows, each seed resampled within itself), next to the oracle's own
gain and its interval (a share of a gain whose interval holds 0 is not measured).

Errors remaining (:func:`hl_debug.scoring.remaining.errors_remaining`) against the truth (the
planted errors among the rows not reviewed yet), per seed and K: the shipped estimate (the
unreviewed rows' anchored posteriors) and ``spread_total`` (the same count spread over the rows
as the detector's unanchored EM posteriors spread it; see :mod:`hl_debug.scoring.remaining`),
and for reference the mean of the anchored and the EM posteriors.

Run::

    python benchmarks/review_loop.py                 # the cells below (under 15 min on 2 cores)
    python benchmarks/review_loop.py --quick         # 3,000 rows, one seed, K = 0, 30, 100 (< 1 min)
    python benchmarks/review_loop.py --cells uniform:0.05:0 --ks 0,100,300,600
    python benchmarks/review_loop.py --base clean    # banking77 without its own suspected errors
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

from benchmarks import cases  # noqa: E402
from hl_debug.models.intent_model import LocalIntentModel  # noqa: E402
from hl_debug.scoring.compare import recovered_share  # noqa: E402
from hl_debug.scoring.label_detector import LabelIssueDetector  # noqa: E402
from hl_debug.scoring.label_issues import encode_labels  # noqa: E402
from hl_debug.scoring.remaining import errors_remaining, spread_posterior  # noqa: E402
from hl_debug.steps.retrain import training_mask  # noqa: E402

log = logging.getLogger("review_loop")

KS = (0, 100, 300)
#: (flip mode, flip rate, seeds): the issue's cell first (the headline), then the extra cells.
CELLS = (("uniform", 0.05, (0, 1, 2, 3)), ("uniform", 0.10, (0, 1)), ("confusable", 0.10, (0, 1)))
#: Arms retrained at every K > 0, and those retrained once (at the largest K, or K-free).
ARMS = ("flagged", "random", "flagged, training rows first")
PRUNED = "flagged, unreviewed flags left out"
#: Measured, not shipped: the unreviewed flagged rows trained on the detector's suggestion (no reviewer saw them).
RELABELLED = "flagged, unreviewed flags relabelled"
ORACLES = ("oracle", "oracle, flagged errors only")
#: The errors-remaining estimates compared.
ESTIMATES = ("shipped", "spread_total", "mean of both")


def review(labels: np.ndarray, true: np.ndarray, suggested: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Labels after the reviewer decided ``rows`` (indices into the annotated rows): the
    suggestion where the row was truly wrong, the given label otherwise."""
    out = labels.copy()
    wrong = labels[rows] != true[rows]
    out[rows[wrong]] = suggested[rows[wrong]]
    return out


def fit_and_predict(X: np.ndarray, usage: np.ndarray, original: np.ndarray, effective: np.ndarray,
                    rows: np.ndarray, leave_out: np.ndarray | None = None) -> np.ndarray:
    """Retrain the shipped local model on the effective labels (minus ``leave_out`` rows, bool
    over every row) and answer ``rows``."""
    train = training_mask(usage, original, effective, leave_out=leave_out)
    model = LocalIntentModel().fit(X[train], effective[train].astype(str))
    return model.predict(X[rows])


def remaining_estimates(det: LabelIssueDetector, decided: dict[int, bool], order: list[int]) -> dict[str, float]:
    """The errors-remaining estimates of :data:`ESTIMATES` after ``decided``."""
    bias = ((det.estimated_errors_high_ - det.estimated_errors_low_) / 2 / det.estimated_errors_
            if det.estimated_errors_ else 0.0)
    shipped = errors_remaining(det.posterior_, decided, order=order, relative_bias=bias)
    spread = errors_remaining(det.posterior_, decided, order=order, relative_bias=bias,
                              spread_total=det.em_estimated_errors_)
    rest = np.ones(len(det.posterior_), dtype=bool)
    rest[list(decided)] = False
    em = spread_posterior(det.posterior_, det.em_estimated_errors_) * det.em_estimated_errors_ / det.posterior_.sum()
    return {"shipped": shipped["estimated"], "shipped_low": shipped["low"], "shipped_high": shipped["high"],
            "spread_total": spread["estimated"], "spread_total_low": spread["low"], "spread_total_high": spread["high"],
            "mean of both": float(0.5 * (det.posterior_[rest].sum() + em[rest].sum()))}


def run_seed(mode: str, rate: float, seed: int, rows: int | None, ks: tuple[int, ...], *,
             clean_base: bool = False) -> dict:
    """One seed of one cell: every arm's answers on the held-out rows (correct or not) and the
    errors-remaining estimates at each K. ``clean_base``: plant the flips in banking77 without
    its own suspected label errors (:func:`benchmarks.cases.banking`), so the planted flips are
    (nearly) all the errors and the errors-remaining truth is complete."""
    t0 = time.perf_counter()
    case = cases.banking(seed=seed, flip_rate=rate, flip_mode=mode, rows=rows, clean_base=clean_base)
    X = case.vectors
    usage = np.array(case.splits, dtype=object)
    original = np.array(case.labels, dtype=object)
    true = np.array(case.true, dtype=object)
    ann = np.flatnonzero(case.annotated)
    classes = case.intents
    det = LabelIssueDetector(random_state=seed, use_api=False).fit(X[ann], encode_labels(original[ann].tolist(),
                                                                                            classes),
                                                                   n_classes=len(classes))
    suggested = np.array(classes, dtype=object)[det.suggested_]
    order = np.argsort(-det.scores_, kind="stable")  # the label_issues table's order
    # held out from training: validation + testing rows, scored against their CLEAN labels
    evaluation = np.flatnonzero(np.isin(usage, ["validation", "testing"]) & np.not_equal(true, None))  # type: ignore[call-overload]
    y_eval = true[evaluation]
    rng = np.random.default_rng(1000 + seed)
    lab_ann, true_ann = original[ann], true[ann]
    # the flagged training rows first (their fixes change the retrained model; an evaluation
    # row's fix changes only how it is scored), each part in the ranking's order
    trains = det.flagged_ & (usage[ann] == "training")
    rankings = {"flagged": order, "random": rng.permutation(len(ann)),
                "flagged, training rows first": order[np.argsort(~trains[order], kind="stable")]}
    wrong = lab_ann != true_ann

    def effective_of(ann_labels: np.ndarray) -> np.ndarray:
        eff = original.copy()
        eff[ann] = ann_labels
        return eff

    def correct(ann_labels: np.ndarray, leave_out: np.ndarray | None = None) -> np.ndarray:
        return fit_and_predict(X, usage, original, effective_of(ann_labels), evaluation, leave_out) == y_eval

    base = correct(lab_ann)
    visible = wrong & det.flagged_
    out: dict = {"mode": mode, "rate": rate, "seed": seed, "data": "clean" if clean_base else "original",
                 "n": len(case), "n_annotated": len(ann),
                 "n_eval": len(evaluation), "testing": (usage[evaluation] == "testing").tolist(),
                 "planted": int(wrong.sum()), "flagged": int(det.flagged_.sum()),
                 "planted_flagged": int(visible.sum()), "count": det.estimated_errors_,
                 "em_count": det.em_estimated_errors_, "base": base.tolist(),
                 "oracle": correct(true_ann).tolist(),
                 "oracle, flagged errors only": correct(np.where(visible, true_ann, lab_ann)).tolist(), "by_k": []}
    for k in ks:
        row: dict = {"k": k}
        for name in ARMS:
            picked = rankings[name][:k]
            row[name] = base.tolist() if k == 0 else correct(review(lab_ann, true_ann, suggested, picked)).tolist()
        picked = order[:k]
        if k == max(ks) and k > 0:
            reviewed = np.zeros(len(ann), dtype=bool)
            reviewed[picked] = True
            leave = np.zeros(len(original), dtype=bool)
            leave[ann[det.flagged_ & ~reviewed]] = True
            row[PRUNED] = correct(review(lab_ann, true_ann, suggested, picked), leave).tolist()
            row["left_out"] = int((leave & (usage == "training")).sum())
            unreviewed = det.flagged_ & ~reviewed
            row[RELABELLED] = correct(np.where(unreviewed, suggested, review(lab_ann, true_ann, suggested,
                                                                               picked))).tolist()
        decided = {int(i): bool(wrong[i]) for i in picked}
        row["found"] = int(sum(decided.values()))
        row["remaining_true"] = int((wrong & ~np.isin(np.arange(len(ann)), picked)).sum())
        row["estimates"] = remaining_estimates(det, decided, [int(i) for i in picked])
        out["by_k"].append(row)
        log.info("%s %.0f%% seed %d K=%d: flagged acc %.4f (found %d), random acc %.4f; remaining %d, est. %.0f / %.0f",
                 mode, 100 * rate, seed, k, np.mean(row["flagged"]), row["found"], np.mean(row["random"]),
                 row["remaining_true"], row["estimates"]["shipped"], row["estimates"]["spread_total"])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _pooled(runs: list[dict], get: Any, rows: str = "eval") -> np.ndarray:
    """Concatenate one answer vector per seed (``get(run)``), optionally the testing rows only."""
    parts = []
    for r in runs:
        v = np.asarray(get(r), dtype=bool)
        parts.append(v[np.asarray(r["testing"], dtype=bool)] if rows == "testing" else v)
    return np.concatenate(parts)


def _share_line(cell: str, k: Any, arm: str, runs: list[dict], get: Any, n_boot: int) -> str:
    """One row of :func:`recovery_table`: arm ``get(run)`` against K = 0 and the oracle, pooled over ``runs``."""
    groups = np.concatenate([np.full(r["n_eval"], r["seed"]) for r in runs])
    test_groups = np.concatenate([np.full(int(np.sum(r["testing"])), r["seed"]) for r in runs])
    base = _pooled(runs, lambda r: r["base"])
    s = recovered_share(base, _pooled(runs, get), _pooled(runs, lambda r: r["oracle"]), groups=groups,
                        n_boot=n_boot, seed=0)
    t = recovered_share(_pooled(runs, lambda r: r["base"], "testing"), _pooled(runs, get, "testing"),
                        _pooled(runs, lambda r: r["oracle"], "testing"), groups=test_groups, n_boot=2)
    share = ("not measurable" if s["share_low"] is None
             else f"{_pct(s['share'])} ({_pct(s['share_low'])}, {_pct(s['share_high'])})")
    return (f"| {cell} | {k} | {arm} | {base.mean() + s['gain']:.4f} | {100 * s['gain']:+.2f} "
            f"({100 * s['gain_low']:+.2f}, {100 * s['gain_high']:+.2f}) | {share} | {_pct(t['share'])} |")


def recovery_table(cells: list[list[dict]], n_boot: int) -> str:
    """Per cell and K: accuracy (pooled over seeds, held-out rows), its change from K = 0 with
    the paired 95% interval, and the share of the oracle's gain recovered with its interval."""
    lines = ["| cell (seeds) | K | arm | accuracy | change from K = 0 (95% CI), pts | share of the oracle's gain "
             "(95% CI) | testing rows only: share |", "|---|---|---|---:|---|---|---:|"]
    for runs in cells:
        cell = f"{runs[0]['mode']} {runs[0]['rate']:.0%} ({','.join(str(r['seed']) for r in runs)})"
        lines.append(f"| {cell} | 0 | — | {_pooled(runs, lambda r: r['base']).mean():.4f} | | | |")
        for j, row in enumerate(runs[0]["by_k"]):
            if not row["k"]:
                continue
            for arm in tuple(a for a in ARMS + (PRUNED, RELABELLED) if all(a in r["by_k"][j] for r in runs)):
                lines.append(_share_line(cell, row["k"], f"**{arm}**" if arm == "flagged" else arm, runs,
                                         lambda r, j=j, arm=arm: r["by_k"][j][arm], n_boot))
        for arm in ORACLES[::-1]:
            lines.append(_share_line(cell, "all", arm, runs, lambda r, arm=arm: r[arm], n_boot))
    return "\n".join(lines)


def _rel(v: float, truth: int) -> str:
    return f"{v:.0f} ({100 * (v - truth) / truth:+.0f}%)" if truth else f"{v:.0f}"


def remaining_table(cells: list[list[dict]]) -> str:
    """Per cell, seed and K: the planted errors not reviewed yet against each estimate."""
    lines = ["| cell | seed | K | found | errors left (truth) | shipped [95% interval] | spread_total [95% interval] "
             "| mean of both |", "|---|---|---|---:|---:|---|---|---|"]
    for runs in cells:
        for r in runs:
            for row in r["by_k"]:
                t, e = row["remaining_true"], row["estimates"]
                lines.append(f"| {r['mode']} {r['rate']:.0%} | {r['seed']} | {row['k']} | {row['found']} | {t} | "
                             f"{_rel(e['shipped'], t)} [{e['shipped_low']:.0f}, {e['shipped_high']:.0f}] | "
                             f"{_rel(e['spread_total'], t)} [{e['spread_total_low']:.0f}, "
                             f"{e['spread_total_high']:.0f}] | {_rel(e['mean of both'], t)} |")
    return "\n".join(lines)


def summary(cells: list[list[dict]]) -> str:
    out = []
    for runs in cells:
        errs = {name: [abs(row["estimates"][name] - row["remaining_true"]) / row["remaining_true"]
                       for r in runs for row in r["by_k"] if row["remaining_true"]] for name in ESTIMATES}
        out.append(f"{runs[0]['mode']} {runs[0]['rate']:.0%}: planted {runs[0]['planted']}, flagged by the detector "
                   f"{', '.join(str(r['planted_flagged']) for r in runs)} of them; errors remaining, worst |relative "
                   f"error| over seeds and K: " + ", ".join(f"{n} {100 * max(v):.0f}%" for n, v in errs.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3,000 banking rows, K = 0, 30, 100, one seed, one cell")
    ap.add_argument("--rows", type=int, default=None, help="banking rows (default: all)")
    ap.add_argument("--cells", default=None,
                    help="space-separated mode:rate:seed,seed,... (default: "
                         + " ".join(f"{m}:{r}:" + ",".join(map(str, s)) for m, r, s in CELLS) + ")")
    ap.add_argument("--ks", default=None, help="comma-separated review budgets (default 0,100,300)")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the recovery intervals")
    ap.add_argument("--base", choices=("original", "clean"), default="original",
                    help="banking77 as released, or without its own suspected label errors (clean: the planted "
                         "flips are the whole truth)")
    ap.add_argument("--json", type=Path, default=None, help="write the per-seed results here")
    ap.add_argument("--from-json", type=Path, nargs="+", default=None,
                    help="print the tables of earlier --json files (cells of the same mode and rate pooled)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.from_json:
        pooled: dict[tuple, list[dict]] = {}
        for f in args.from_json:
            for runs in json.loads(f.read_text()):
                pooled.setdefault((runs[0]["mode"], runs[0]["rate"]), []).extend(runs)
        merged = list(pooled.values())
        print(recovery_table(merged, args.n_boot), remaining_table(merged), summary(merged), sep="\n\n")
        return 0
    cells = CELLS if not args.cells else tuple(
        (m, float(r), tuple(int(s) for s in seeds.split(","))) for m, r, seeds in (c.split(":") for c in args.cells.split()))
    rows = args.rows
    ks = tuple(int(k) for k in args.ks.split(",")) if args.ks else KS
    if args.quick:
        rows, ks, cells = rows or 3000, (0, 30, 100), ((cells[0][0], cells[0][1], cells[0][2][:1]),)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    results: list[list[dict]] = []
    for m, r, seeds in cells:
        results.append([])
        for s in seeds:
            results[-1].append(run_seed(m, r, s, rows, ks, clean_base=args.base == "clean"))
            if args.json:  # after every seed, so a long run stopped early keeps what it measured
                args.json.write_text(json.dumps(results, indent=1, default=float))
    print(recovery_table(results, args.n_boot))
    print()
    print(remaining_table(results))
    print()
    print(summary(results))
    spec = " ".join(f"{m}:{r}:" + ",".join(map(str, s)) for m, r, s in cells)
    print(f"\nbanking77 ({args.base} base), {results[0][0]['n']:,} rows, cells {spec}, "
          f"K {','.join(map(str, ks))}, {time.perf_counter() - t0:.0f} s, load average {load:.2f} at start, "
          f"{time.strftime('%Y-%m-%d')}.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
