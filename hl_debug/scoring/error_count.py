"""The label-issue detector's error count: cleanlab's confident joint, divided by its
response to the detector's own planted flips (``count="replica"``).

The confident joint finds only part of a data set's mistakes, and the flips it finds make
some right rows doubtful too. Its response to planted flips — (count with them − count
without) / flips, measured on the same rows and classifier — is how many it counts per
mistake (about 0.66–0.74 on the benchmark's cells); the count over that response is the
estimate. Pure functions on arrays; :class:`~hl_debug.scoring.label_detector.LabelIssueDetector`
records the rounds and calls them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hl_debug.scoring.label_issues import confident_joint_count


def count_or_none(labels: np.ndarray, pred_probs: Any) -> int | None:
    """The confident joint's off-diagonal count, or None where cleanlab refuses the input."""
    try:
        return confident_joint_count(labels, pred_probs)
    except Exception:  # noqa: BLE001 - cleanlab refuses degenerate inputs (e.g. tiny classes)
        return None


def replica_count(count: int, rounds: Sequence[Mapping[str, Any]], mix: Mapping[int, float]
                  ) -> tuple[int, float | None, list[float], float]:
    """``(count / response, response, each usable round's response, relative half-range)``.

    ``rounds`` are the synthetic rounds (``code`` of the flip kind, ``flipped``, ``base`` and
    ``noisy`` counts; rounds without both counts or flips are left out); each round weighs as
    much as ``mix`` (code -> the stacker's estimated share of that kind of mistake) gives its
    kind, shared among the kind's rounds. Without a usable round the count is kept
    (response None, spread 0)."""
    usable = [c for c in rounds if c["noisy"] is not None and c["base"] is not None and c["flipped"] > 0]
    responses = [(c["noisy"] - c["base"]) / c["flipped"] for c in usable]
    if not usable:
        return count, None, responses, 0.0
    codes = [c["code"] for c in usable]
    w = np.array([mix.get(code, 0.0) / codes.count(code) for code in codes])
    w = w if w.sum() > 1e-9 else np.ones(len(usable))
    rate = float(np.clip(np.average(responses, weights=w), 0.2, 1.5))
    spread = (max(responses) - min(responses)) / 2 / rate
    return int(round(count / rate)), rate, responses, spread
