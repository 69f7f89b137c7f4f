"""The label-issue detector's synthetic rounds: labels it flips itself, the whole evidence
recomputed out of fold on them, so that the combination and its calibration are learnt where
each row's status is known (:class:`~hl_debug.scoring.label_detector.LabelIssueDetector`).

Each round flips ``synthetic_rate`` of the labels with one noise kind
(:func:`~hl_debug.scoring.noise.draw_scorable_noise`), on a random subset of at most
``max_calibration_rows`` rows (their neighbours recomputed within it); with
``count="replica"`` it also records the confident joint's count with and without the flips
(:mod:`hl_debug.scoring.error_count`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hl_debug.neighbors import knn
from hl_debug.scoring.error_count import count_or_none
from hl_debug.scoring.label_issues import _logit, _other_max, ensemble_distribution, out_of_fold_probabilities
from hl_debug.scoring.noise import confusable_classes, draw_scorable_noise, noise_transition
from hl_debug.scoring.stacking import component_scores

log = logging.getLogger(__name__)


def calibration_features(labels: np.ndarray, distribution: np.ndarray) -> np.ndarray:
    """The fixed blend's calibration features: logit of the given label's probability in the
    evidence average and its margin to the best other label, shape ``(n, 2)``."""
    self_conf = distribution[np.arange(len(labels)), labels]
    return np.column_stack([_logit(self_conf), self_conf - _other_max(distribution, labels)])


def synthetic_rows(det: Any, X: np.ndarray, labels: np.ndarray, K: int, neighbors: tuple[np.ndarray, np.ndarray],
                   cluster_ids: np.ndarray | None, api_probs: np.ndarray | None) -> tuple[Any, ...]:
    """Per synthetic row of detector ``det`` (its settings, ``pred_probs_``,
    ``cleanlab_issues_`` and ``_members``): components, blend features, kind (0: not flipped,
    1..: the noise kind that flipped it), the real row it copies, and whether its status is
    known (flipped, or not suspected by confident learning); then the rounds' counts (kind,
    code, flips, the confident joint's count without / with them)."""
    rng = np.random.default_rng(det.random_state)
    kinds = det.synthetic_kinds or (("uniform", "transition") if det.combine == "stack"
                                     else ("uniform", "confusable"))
    confusable = confusable_classes(det.pred_probs_, labels, n_classes=K)
    transition = (noise_transition(labels, det.pred_probs_, n_classes=K)
                  if {"transition", "grouped"} & set(kinds) else None)
    # Rows confident learning already suspects have an unknown status in the synthetic
    # data (perhaps genuine errors, labelled "not flipped").
    known = ~det.cleanlab_issues_
    n = len(labels)
    sub = np.arange(n)
    cal_X, cal_labels, cal_nbrs, cal_clusters, cal_api = X, labels, neighbors, cluster_ids, api_probs
    if det.max_calibration_rows is not None and n > det.max_calibration_rows:
        sub = np.sort(rng.choice(n, size=det.max_calibration_rows, replace=False))
        cal_X, cal_labels, known = X[sub], labels[sub], known[sub]
        cal_nbrs = knn(cal_X, min(neighbors[0].shape[1], len(sub) - 1))
        cal_clusters = cluster_ids[sub] if cluster_ids is not None else None
        cal_api = api_probs[sub] if api_probs is not None else None
    comps, blend, target, rows, status = [], [], [], [], []
    base_count = None
    if det.count == "replica" and det.combine == "stack":
        # The count's response to planted flips is measured against the same rows' count
        # without them, from a classifier fitted on the same rows (a subset's classifier
        # is less sure than the full data's).
        base_P = np.asarray(det.pred_probs_) if len(sub) == n else out_of_fold_probabilities(
            cal_X, cal_labels, n_classes=K, classifier=det.classifier, n_splits=det.n_splits,
            random_state=det.random_state)
        base_count = count_or_none(cal_labels, base_P)
    counts: list[dict[str, Any]] = []
    for r in range(det.n_synthetic):
        kind = kinds[r % len(kinds)]
        noisy = draw_scorable_noise(cal_labels, kind, rate=det.synthetic_rate, n_classes=K, neighbors=cal_nbrs,
                                    confusable=confusable, transition=transition, random_state=rng)
        if noisy is None:
            log.info("label issues: synthetic round %d skipped (every flip would leave a class with a "
                     "single row)", r)
            continue
        flipped = noisy != cal_labels
        code = sorted(set(kinds)).index(kind) + 1
        P, Q, C, A = det._members(cal_X, noisy, K, cal_nbrs, cal_clusters, cal_api, det.random_state + r + 1)
        comps.append(component_scores(noisy, P, Q, cluster_probs=C,
                                      api_probs=A if det.combine == "blend" or det.stack_api else None)[1])
        E = ensemble_distribution(*[m for m in (P, Q, C, A) if m is not None])
        blend.append(calibration_features(noisy, E))
        target.append(np.where(flipped, code, 0))
        rows.append(sub)
        status.append(known | flipped)
        counts.append({"kind": kind, "code": code, "flipped": int(flipped.sum()), "base": base_count,
                       "noisy": count_or_none(noisy, np.asarray(P)) if base_count is not None else None})
    if not comps:
        raise ValueError(f"too few labelled rows to calibrate on ({n} rows, {K} classes): no synthetic flip "
                         "leaves every class with two rows")
    return (np.vstack(comps), np.vstack(blend), np.concatenate(target), np.concatenate(rows),
            np.concatenate(status), counts)
