"""hl_debug.threads: the BLAS/OpenMP limit used around small-product fitting."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info

from hl_debug.scoring.label_detector import LabelIssueDetector
from hl_debug.threads import limit_threads


def pools() -> set[int]:
    return {p["num_threads"] for p in threadpool_info()}


def test_limit_threads_sets_and_restores_every_pool():
    outside = pools()
    with limit_threads(1):
        assert pools() == {1}
    assert pools() == outside
    with limit_threads(None):
        assert pools() == outside


@pytest.mark.parametrize("bad", [0, -2])
def test_limit_threads_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="n_threads"):
        limit_threads(bad)


class SpyLR(LogisticRegression):
    """Records the thread pools' sizes whenever it is fitted."""

    seen: list[set[int]] = []

    def fit(self, X, y, sample_weight=None):
        SpyLR.seen.append(pools())
        return super().fit(X, y, sample_weight=sample_weight)


@pytest.mark.parametrize("n_threads, expect_one", [(1, True), (None, False)])
def test_label_issue_detector_fits_single_threaded_by_default(n_threads, expect_one):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = (X[:, 0] > 0).astype(int)
    SpyLR.seen = []
    outside = pools()
    LabelIssueDetector(classifier=SpyLR(max_iter=200), n_splits=3, k=5, n_threads=n_threads).fit(X, y)
    assert SpyLR.seen  # the classifier was fitted
    assert all(s == ({1} if expect_one else outside) for s in SpyLR.seen)
    assert pools() == outside


def test_a_pool_loaded_after_the_first_limit_is_limited_too():
    """The pools are looked up again once new modules are imported (a native library loaded
    later, such as usearch's OpenMP runtime, brings its own pool)."""
    import subprocess
    import sys

    code = ("from threadpoolctl import threadpool_info\n"
            "from hl_debug.threads import limit_threads\n"
            "with limit_threads(1): pass\n"
            "import usearch.index\n"
            "with limit_threads(1):\n"
            "    assert {p['num_threads'] for p in threadpool_info()} == {1}, threadpool_info()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={
        "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])})
    assert out.returncode == 0, out.stderr
