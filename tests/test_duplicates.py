"""Near-duplicate groups on small synthetic embeddings with planted duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.scoring.duplicates import duplicate_groups, near_duplicate_components


def unit(rows):
    X = np.asarray(rows, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 32))
    rows = list(base)
    rows.append(base[0] + rng.normal(scale=0.01, size=32))  # 6: near-copy of 0
    rows.append(base[2].copy())                              # 7: exact copy of 2
    rows.append(base[4] + rng.normal(scale=0.01, size=32))  # 8: near-copy of 4
    return unit(rows)


def test_components_join_near_and_exact_duplicates(X):
    comp, best = near_duplicate_components(X, threshold=0.95)
    assert comp[0] == comp[6] and comp[2] == comp[7] and comp[4] == comp[8]
    assert len({comp[i] for i in (0, 1, 2, 3, 4, 5)}) == 6
    assert best[7] == pytest.approx(1.0, abs=1e-5) and np.isnan(best[1])


def test_conflicting_labels_and_split_leakage(X):
    labels = ["a", "b", "c", "d", "e", "f", "z", "c", None]
    usages = ["training", "training", "training", "training", "training", "testing", "training", "testing", None]
    groups = duplicate_groups(X, labels=labels, usages=usages, threshold=0.95)
    kinds = {(g["kind"], tuple(g["members"])) for g in groups}
    assert ("conflicting_labels", (0, 6)) in kinds        # planted: same text, labels a vs z
    assert ("split_leakage", (2, 7)) in kinds             # planted: training copy in testing
    assert not any(g["members"] == [4, 8] for g in groups)  # consistent, unannotated copy: fine
    for g in groups:
        assert len(g["similarity"]) == len(g["members"]) and min(g["similarity"]) >= 0.95 - 1e-6


def test_nan_labels_count_as_missing(X):
    nan = float("nan")
    labels = ["a", "b", "c", "d", "e", "f", "a", nan, nan]
    usages = ["training"] * 6 + ["training", nan, nan]
    assert duplicate_groups(X, labels=labels, usages=usages) == []


def test_higher_threshold_drops_near_copies(X):
    comp, _ = near_duplicate_components(X, threshold=0.99999)
    assert comp[0] != comp[6] and comp[2] == comp[7]


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": 0}, r"threshold must be in \(0, 1\]"),
    ({"threshold": 1.5}, r"threshold must be in \(0, 1\]"),
])
def test_bad_threshold(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        near_duplicate_components(X, **kwargs)


def test_bad_shapes(X):
    with pytest.raises(ValueError, match="one entry per row of X"):
        duplicate_groups(X, labels=["a"], usages=["training"])
    with pytest.raises(ValueError, match="2-D array"):
        near_duplicate_components(np.ones(3))
