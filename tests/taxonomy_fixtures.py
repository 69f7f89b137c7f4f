"""The taxonomy signal's table and report for the web tests, from the REAL signal run on the
tiny export (see ``tests/webapp_fixtures.py``) with synthetic vectors: each row sits near the
centre of its true intent, so the planted error (1018, ``bill_question`` among
``chat_settings``) and three ``card_issue`` rows placed among ``bill_question`` give the
signal overlap to find. No encoder, no model."""

from __future__ import annotations

import numpy as np

from hl_debug.signals.context import SignalContext
from hl_debug.signals.taxonomy import Taxonomy
from hl_debug.steps.review import signal_table
from hl_debug.storage import Store
from tests.webapp_fixtures import CLUSTER_OF

NEAR_BILLS = (1000, 1001, 1002)  # card_issue rows written as if they were bill questions


def taxonomy_context(store: Store) -> SignalContext:
    rows = store.utterance_rows()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    vecs = []
    for r in rows:
        c = 1 if r["id"] in NEAR_BILLS else CLUSTER_OF[r["id"]]
        vecs.append(centres[c] + rng.normal(0, 0.35, 16))
    X = np.asarray(vecs, dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return SignalContext(ids=np.array([r["id"] for r in rows]), texts=[r["text"] for r in rows], vectors=X,
                         labels=[r["intent"] for r in rows], splits=[r["usage"] for r in rows])


def fill_taxonomy(store: Store, **knobs) -> Store:
    """Run the taxonomy signal on the tiny store and write its table and report."""
    result = Taxonomy(**knobs).find(taxonomy_context(store))
    store.replace_table(signal_table("taxonomy"), result.rows)
    store.save_report("taxonomy", result.report)
    return store
