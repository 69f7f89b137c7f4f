"""Label-noise benchmark: does hl-debug find injected label errors better than cleanlab?

Known noise is injected into the real export's annotated rows — uniform flips (to any
other intent) and flips towards each intent's most confusable intent — at 2%, 5% and
10%, over several seeds. For each noisy copy of the labels, in the same run and with the
same embeddings and classifier (logistic regression, 5-fold out-of-fold):

* **cleanlab** — ``get_label_quality_scores(method="self_confidence")`` on the
  out-of-fold probabilities (the standard confident-learning ranking);
* **hl-debug** — :class:`hl_debug.scoring.label_detector.LabelIssueDetector` score: the
  out-of-fold probabilities averaged with the 20 nearest neighbours' labels, ranked by the
  rank average of self-confidence and normalised margin (nothing fitted on the rows it
  scores; flags calibrated on synthetic flips injected on top of the noisy labels, so it
  never sees which rows were injected);
* **hl-debug + API** (``--with-api``) — the same with the recorded prediction API's
  answers as extra evidence. Caution: the API's model was trained on the *clean* labels,
  so on injected rows it disagrees with the (noisy) label almost by construction — a
  leak a real user never has. It is reported separately, never as the headline.

Reported: AUPRC (average precision), AUROC, and precision at k (k = number of injected
errors), mean ± std over seeds. The real export already holds some genuine annotation
mistakes; they count as negatives here (only injected flips are known positives).

Run::

    .venv/bin/python benchmarks/label_noise.py            # 3 seeds (≈7 min on 2 cores)
    .venv/bin/python benchmarks/label_noise.py --quick    # 2 seeds
    .venv/bin/python benchmarks/label_noise.py --seeds 1 --rates 0.05 --kinds uniform --limit 600   # a quick check
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from benchmarks.synthetic import export_subset  # noqa: E402
from hl_debug.scoring.label_detector import LabelIssueDetector  # noqa: E402
from hl_debug.scoring.label_issues import (  # noqa: E402
    cleanlab_scores,
    confusable_classes,
    encode_labels,
    inject_noise,
    out_of_fold_probabilities,
)

DEFAULT_EXPORT = ROOT.parent / "shared" / "data" / "chatbot_intent_classifier_data.json.zip"
DEFAULT_RECORDED = ROOT.parent / "shared" / "data" / "recorded_predictions_project411.json"
log = logging.getLogger("label_noise")


def load(export: Path, recorded: Path | None, db: str) -> dict:
    """Ingest + embed the export into ``db`` (cached) and return arrays of the annotated rows."""
    import pandas as pd

    from hl_debug.models.encoders import default_encoder
    from hl_debug.steps.embed import embed
    from hl_debug.steps.ingest import ingest
    from hl_debug.storage import Store

    store = Store(db)
    ingest(store, export)
    encoder = default_encoder()
    embed(store, encoder, progress=False)
    ids, X = store.load_embeddings(encoder.identity)
    df = pd.DataFrame(store.utterance_columns(("id", "intent", "text"))).set_index("id").loc[ids]
    mask = df["intent"].notna().to_numpy()
    classes = sorted(df.loc[mask, "intent"].unique())
    out = {"X": X[mask], "labels": encode_labels(df.loc[mask, "intent"].tolist(), classes), "classes": classes}
    if recorded and recorded.exists():
        answers = json.loads(recorded.read_text(encoding="utf-8"))
        by_text = {}
        for a in answers:
            value = (a.get("predictions") or [{}])[0].get("value") or []
            by_text[a["data"]["text"]] = (value[0]["label"], value[0]["confidence"]) if value else (None, np.nan)
        texts = df.loc[mask, "text"].tolist()
        out["api_labels"] = encode_labels([by_text.get(t, (None, 0))[0] for t in texts], classes)
        out["api_confidence"] = np.array([by_text.get(t, (None, np.nan))[1] for t in texts], dtype=float)
    store.close()
    return out


def metrics(truth: np.ndarray, score: np.ndarray) -> dict[str, float]:
    k = int(truth.sum())
    top = np.argsort(-score, kind="stable")[:k]
    return {"auprc": average_precision_score(truth, score), "auroc": roc_auc_score(truth, score),
            "p_at_k": float(truth[top].mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", type=Path, default=DEFAULT_EXPORT)
    ap.add_argument("--recorded", type=Path, default=DEFAULT_RECORDED)
    ap.add_argument("--db", default="/tmp/hl_label_noise.db", help="scratch database (embeddings cached)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 seeds")
    ap.add_argument("--rates", default="0.02,0.05,0.10")
    ap.add_argument("--kinds", default="uniform,confusable")
    ap.add_argument("--with-api", action="store_true", help="also score hl-debug with the (leaky) API evidence")
    ap.add_argument("--limit", type=int, default=None, help="only N of the export's rows, spread over it (a quick check)")
    ap.add_argument("--json", type=Path, default=None, help="write per-run results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    seeds = 2 if args.quick else args.seeds
    with tempfile.TemporaryDirectory() as tmp:
        export = export_subset(args.export, args.limit, Path(tmp))
        data = load(export, args.recorded if args.with_api else None, args.db)
    X, clean = data["X"], data["labels"]
    K = len(data["classes"])
    log.info("%d annotated rows, %d intents", len(clean), K)
    # The confusable map comes from the clean labels' out-of-fold confusions (a property of
    # the task, fixed across seeds), as a systematic annotator mistake would be.
    confusable = confusable_classes(out_of_fold_probabilities(X, clean, n_classes=K), clean, n_classes=K)
    log.info("most confusable: %s", {data["classes"][i]: data["classes"][j] for i, j in enumerate(confusable)})

    runs = []
    t_start = time.perf_counter()
    for kind in args.kinds.split(","):
        for rate in (float(r) for r in args.rates.split(",")):
            for seed in range(seeds):
                noisy, truth = inject_noise(clean, rate=rate, kind=kind, n_classes=K, confusable=confusable,
                                            random_state=1000 + seed)
                t0 = time.perf_counter()
                det = LabelIssueDetector(random_state=seed, use_api=False).fit(X, noisy, n_classes=K)
                row = {"kind": kind, "rate": rate, "seed": seed, "n_injected": int(truth.sum())}
                row["cleanlab"] = metrics(truth, -cleanlab_scores(noisy, det.pred_probs_))
                row["hl_debug"] = metrics(truth, det.scores_)
                row["flagged"] = int(det.flagged_.sum())
                row["flag_precision"] = float(truth[det.flagged_].mean()) if det.flagged_.any() else float("nan")
                row["flag_precision_estimated"] = det.estimated_precision_
                if args.with_api:
                    det_api = LabelIssueDetector(random_state=seed).fit(
                        X, noisy, n_classes=K, api_labels=data["api_labels"], api_confidence=data["api_confidence"])
                    row["hl_debug_api"] = metrics(truth, det_api.scores_)
                row["seconds"] = round(time.perf_counter() - t0, 1)
                runs.append(row)
                log.info("%-10s %.2f seed %d: cleanlab AUPRC %.3f  hl-debug %.3f%s  (%.1fs)", kind, rate, seed,
                         row["cleanlab"]["auprc"], row["hl_debug"]["auprc"],
                         f"  +api {row['hl_debug_api']['auprc']:.3f}" if args.with_api else "", row["seconds"])
    print(table(runs, with_api=args.with_api, seeds=seeds, total_s=time.perf_counter() - t_start))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


def table(runs: list[dict], *, with_api: bool, seeds: int, total_s: float) -> str:
    methods = ["cleanlab", "hl_debug"] + (["hl_debug_api"] if with_api else [])
    names = {"cleanlab": "cleanlab self-conf.", "hl_debug": "hl-debug", "hl_debug_api": "hl-debug + API (leaky)"}
    head = "| noise | rate | method | AUPRC | AUROC | P@k | flagged (precision: real / estimated) |"
    lines = [head, "|" + "---|" * 7]
    keys = sorted({(r["kind"], r["rate"]) for r in runs}, key=lambda t: (t[0] != "uniform", t[1]))
    for kind, rate in keys:
        group = [r for r in runs if r["kind"] == kind and r["rate"] == rate]
        for m in methods:
            cells = []
            for metric in ("auprc", "auroc", "p_at_k"):
                v = np.array([r[m][metric] for r in group])
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
            flag = ""
            if m == "hl_debug":
                flag = (f"{np.mean([r['flagged'] for r in group]):.0f} "
                        f"({np.nanmean([r['flag_precision'] for r in group]):.2f} / "
                        f"{np.nanmean([r['flag_precision_estimated'] for r in group]):.2f})")
            lines.append(f"| {kind} | {rate:.0%} | {names[m]} | " + " | ".join(cells) + f" | {flag} |")
    lines.append(f"\n{seeds} seeds per row; k = number of injected flips; total {total_s:.0f}s.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
