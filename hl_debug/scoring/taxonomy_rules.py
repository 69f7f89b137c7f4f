"""Taxonomy advice, part 2: boundary rules for confusable pairs of intents.

For a pair ``(a, b)`` the words and phrases that tell the two sides apart come from a
class-based TF-IDF contrast (:class:`TermStats`, :func:`contrast_terms`): a term's share
of ``a``'s rows minus its share of ``b``'s rows, weighted by BERTopic's c-TF-IDF idf
``log(1 + A / f_t)`` (``A`` the average number of term occurrences per intent, ``f_t`` the
term's occurrences over every intent), keeping terms that a majority of the pair's rows
containing them follow. :func:`boundary_rule` turns the top terms of each side into a
one-line guideline ("mentions limit / increase -> credit_question; mentions routing /
number -> finances") and applies it to the pair's rows: the rows it covers whose label goes
against it are the violators — always a minority, since every term is chosen for what most
of its rows carry. No external service is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class TermStats:
    """Which row contains which term, and each term's c-TF-IDF idf.

    ``presence``: sparse CSR (m, V) 0/1 matrix; ``terms``: (V,) str; ``idf``: (V,) float;
    ``per_class``: (n_classes, V) rows of each class containing each term.
    """

    presence: Any
    terms: np.ndarray
    idf: np.ndarray
    per_class: np.ndarray

    @classmethod
    def fit(cls, texts: Sequence[str], labels: np.ndarray, n_classes: int, *,
            ngram_range: tuple[int, int] = (1, 2), min_df: int = 2, max_features: int = 20_000) -> TermStats:
        """Count the terms of ``texts`` (stop words: :mod:`hl_debug.scoring.clusters`'s list)."""
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

        from hl_debug.scoring.clusters import CONTENT_WORDS

        vec = CountVectorizer(ngram_range=ngram_range, stop_words=sorted(ENGLISH_STOP_WORDS - CONTENT_WORDS),
                              min_df=min(min_df, max(len(texts), 1)), binary=True, max_features=max_features)
        try:
            M = vec.fit_transform(list(texts)).tocsr()
        except ValueError:  # no vocabulary
            import scipy.sparse as sp

            return cls(sp.csr_matrix((len(texts), 0)), np.array([], dtype=str), np.zeros(0),
                       np.zeros((n_classes, 0)))
        per_class = np.zeros((n_classes, M.shape[1]), dtype=np.float32)
        coo = M.tocoo()
        np.add.at(per_class, (np.asarray(labels)[coo.row], coo.col), 1.0)
        f_t = per_class.sum(axis=0)
        avg = f_t.sum() / max(int((per_class.sum(axis=1) > 0).sum()), 1)
        return cls(M, vec.get_feature_names_out(), np.log1p(avg / np.clip(f_t, 1e-12, None)), per_class)


def contrast_terms(stats: TermStats, labels: np.ndarray, a: int, b: int, *, top_n: int = 3, min_rows: int = 3,
                   min_purity: float = 0.6) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The terms that distinguish side ``a`` from side ``b``, and ``b`` from ``a``.

    A term counts for side ``a`` when at least ``min_rows`` of ``a``'s rows contain it and
    at least ``min_purity`` of the pair's rows containing it are ``a``'s; ranked by
    ``(share in a - share in b) * idf``. Each entry: ``term``, ``weight``, ``n_a``, ``n_b``
    (pair rows containing it on each side).
    """
    y = np.asarray(labels)
    ra, rb = np.flatnonzero(y == a), np.flatnonzero(y == b)
    if not len(ra) or not len(rb) or not len(stats.terms):
        return [], []
    na, nb = stats.per_class[a].astype(np.float64), stats.per_class[b].astype(np.float64)
    contrast = (na / len(ra) - nb / len(rb)) * stats.idf
    sides = []
    for own, other, sign in ((na, nb, 1.0), (nb, na, -1.0)):
        purity = own / np.clip(own + other, 1, None)
        ok = np.flatnonzero((own >= min_rows) & (purity >= min_purity) & (sign * contrast > 0))
        order = ok[np.lexsort((stats.terms[ok], -sign * contrast[ok]))]
        chosen: list[dict[str, Any]] = []
        for t in order:
            term = str(stats.terms[t])
            if any(term in c["term"].split() or c["term"] in term.split() for c in chosen):
                continue  # "credit limit" adds nothing after "limit"
            chosen.append({"term": term, "weight": float(sign * contrast[t]), "n_a": int(na[t]), "n_b": int(nb[t])})
            if len(chosen) == top_n:
                break
        sides.append(chosen)
    return sides[0], sides[1]


def guideline(intent_a: str, intent_b: str, terms_a: Sequence[dict], terms_b: Sequence[dict]) -> str:
    """``"mentions limit / increase -> credit_question; mentions routing / number -> finances"``."""
    parts = [f"mentions {' / '.join(t['term'] for t in terms)} -> {intent}"
             for intent, terms in ((intent_a, terms_a), (intent_b, terms_b)) if terms]
    return "; ".join(parts) if parts else f"no wording separates {intent_a} from {intent_b}"


def boundary_rule(stats: TermStats, labels: np.ndarray, a: int, b: int, classes: Sequence[str], *,
                  top_n: int = 3, min_rows: int = 3, min_purity: float = 0.6) -> dict[str, Any]:
    """The suggested guideline for pair ``(a, b)`` and the rows that go against it.

    A pair row is *covered* when it contains a term of either side; the rule assigns it to
    the side whose terms it contains more of (by contrast weight; a tie leaves it
    uncovered). Returns ``terms_a``, ``terms_b``, ``guideline``, ``n_rows`` (pair rows),
    ``n_covered``, ``n_follow``, ``agreement`` (``n_follow / n_covered``, NaN when none is
    covered) and ``violators``: positions of the covered rows labelled against the rule,
    strongest contradiction first.
    """
    y = np.asarray(labels)
    terms_a, terms_b = contrast_terms(stats, y, a, b, top_n=top_n, min_rows=min_rows, min_purity=min_purity)
    rows = np.flatnonzero((y == a) | (y == b))
    chosen = terms_a + terms_b
    cols = np.searchsorted(stats.terms, [t["term"] for t in chosen]) if chosen else np.zeros(0, dtype=int)
    w = np.array([t["weight"] for t in terms_a] + [-t["weight"] for t in terms_b])
    score = (stats.presence[rows][:, cols] @ w) if chosen else np.zeros(len(rows))
    score = np.asarray(score).ravel()
    side = np.where(score > 0, a, np.where(score < 0, b, -1))
    covered = side >= 0
    against = covered & (side != y[rows])
    strength = np.abs(score)
    viol = rows[against][np.argsort(-strength[against], kind="stable")]
    n_cov = int(covered.sum())
    return {
        "intent_a": classes[a], "intent_b": classes[b], "terms_a": terms_a, "terms_b": terms_b,
        "guideline": guideline(classes[a], classes[b], terms_a, terms_b), "n_rows": int(len(rows)),
        "n_covered": n_cov, "n_follow": int(n_cov - against.sum()),
        "agreement": float((n_cov - against.sum()) / n_cov) if n_cov else float("nan"),
        "violators": [int(i) for i in viol],
    }
