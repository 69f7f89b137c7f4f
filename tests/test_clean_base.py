"""The clean base of the label-noise cells: suspected genuine errors found and dropped."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import clean_base

WORDS = {"card": ["card", "lost", "stolen", "blocked"], "transfer": ["transfer", "send", "wire", "iban"],
         "refund": ["refund", "return", "money", "back"]}


def _data(n_per: int = 40, wrong: int = 3, seed: int = 0) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = sorted(WORDS)
    texts, labels, vecs = [], [], []
    for k, name in enumerate(names):
        for _ in range(n_per):
            texts.append(" ".join(rng.choice(WORDS[name], 4)) + f" please {rng.integers(1000)}")
            labels.append(name)
            v = rng.normal(0, 0.3, len(names))
            v[k] += 3
            vecs.append(v)
    bad = rng.choice(len(texts), wrong * len(names), replace=False)
    for i in bad:
        labels[i] = names[(names.index(labels[i]) + 1) % len(names)]
    mistaken = np.zeros(len(texts), dtype=bool)
    mistaken[bad] = True
    return texts, labels, np.array(vecs), mistaken


def test_both_views_find_the_wrong_labels_and_little_else():
    texts, labels, vecs, mistaken = _data()
    masks = clean_base.suspects(texts, labels, vectors=vecs)
    for view in clean_base.VIEWS:
        found = masks[view]
        assert found[mistaken].mean() >= 0.8, view
        assert found[~mistaken].mean() <= 0.05, view
    union = clean_base.combine(masks)
    assert union.sum() >= max(m.sum() for m in masks.values())
    assert clean_base.combine(masks, "intersection").sum() <= min(m.sum() for m in masks.values())
    assert (clean_base.combine(masks, "tfidf") == masks["tfidf"]).all()


def test_clean_labels_give_few_suspects():
    texts, labels, vecs, mistaken = _data(wrong=0)
    assert not mistaken.any()
    masks = clean_base.suspects(texts, labels, vectors=vecs)
    assert all(m.sum() <= 3 for m in masks.values())


def test_cache_round_trip_does_not_refit(tmp_path, monkeypatch):
    texts, labels, vecs, _ = _data()
    first = clean_base.suspects(texts, labels, vectors=vecs, cache=tmp_path)
    assert len(list(tmp_path.glob("suspects-*.json"))) == 2

    def boom(*a, **k):
        raise AssertionError("refitted although cached")

    monkeypatch.setattr(clean_base, "_oof", boom)
    again = clean_base.suspects(texts, labels, vectors=lambda: boom(), cache=tmp_path)
    for view in clean_base.VIEWS:
        assert (again[view] == first[view]).all()
    changed = list(labels)
    changed[0] = "refund" if changed[0] != "refund" else "card"
    with pytest.raises(AssertionError, match="refitted"):
        clean_base.suspects(texts, changed, views=("tfidf",), cache=tmp_path)


def test_bad_input_rejected():
    texts, labels, vecs, _ = _data()
    with pytest.raises(ValueError, match="views"):
        clean_base.suspects(texts, labels, views=("bert",))
    with pytest.raises(ValueError, match="needs vectors"):
        clean_base.suspects(texts, labels, views=("vectors",))
    with pytest.raises(ValueError, match="labels"):
        clean_base.suspects(texts, labels[:-1])
    with pytest.raises(ValueError, match="valid"):
        clean_base.combine({"tfidf": np.zeros(2, bool), "vectors": np.zeros(2, bool)}, "any")
