"""A text's vector depends only on the text and the encoder identity, never on its batch.

The per-token int8 rewrite (hl_debug.models.encoders.int8_per_token) on a tiny synthetic
graph, then the real bundled model: the same texts in shuffled batches of different sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.models.encoders import SentenceEncoder, backend_names, get_backend
from hl_debug.models.encoders.int8_per_token import QMAX, REVISION, WEIGHT_MAX, ZERO_POINT, rewrite_per_token


def _tiny_quantised(tmp_path, *, reduce_range=True):
    """A (batch, seq, 8) -> (batch, seq, 4) MatMul, dynamically int8-quantised (7-bit weights by default,
    as for onnx-int8-token; 8-bit like onnx-int8 with ``reduce_range=False``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    w = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])],
        [numpy_helper.from_array(w, "w")])
    fp32, int8 = tmp_path / "tiny.onnx", tmp_path / "tiny_int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range)
    return w, onnx.load(str(int8))


def _run(model, x):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_per_token_rewrite_makes_a_row_independent_of_its_batch(tmp_path):
    w, dynamic = _tiny_quantised(tmp_path)
    x = np.random.default_rng(1).normal(size=(1, 3, 8)).astype(np.float32)
    loud = 50 * np.random.default_rng(2).normal(size=(1, 3, 8)).astype(np.float32)  # a batch-mate with a wide range
    alone, batched = _run(dynamic, x)[0], _run(dynamic, np.concatenate([x, loud]))[0]
    assert np.abs(alone - batched).max() > 1e-3  # per-tensor scales: the batch-mate changes the result
    per_token = rewrite_per_token(dynamic)
    ops = {n.op_type for n in per_token.graph.node}
    assert "DynamicQuantizeLinear" not in ops and "MatMulIntegerToFloat" in ops  # still an integer product
    alone, batched = _run(per_token, x)[0], _run(per_token, np.concatenate([x, loud]))[0]
    assert np.abs(alone - batched).max() <= 1e-6
    exact = x[0] @ w
    assert np.abs(alone - exact).max() < 0.05 * np.abs(exact).max()  # int8 accuracy, per token


def _saturating_u8s8(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``q @ w`` as x86's ``vpmaddubsw`` computes it without VNNI: adjacent products summed in int16, clipped."""
    pairs = q[:, 0::2, None] * w[None, 0::2] + q[:, 1::2, None] * w[None, 1::2]
    return np.clip(pairs, -32768, 32767).sum(1)


def _tokens_and_weights(model, x):
    from onnx import numpy_helper

    w = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_quantized"))
    q = np.clip(np.round(x / (np.abs(x).max(1, keepdims=True) / QMAX)) + ZERO_POINT, 0, 255)
    return q.astype(np.int64), w.astype(np.int64)


def test_per_token_integers_cannot_saturate_a_cpu_without_vnni(tmp_path):
    # CI's CPU (no VNNI) clipped 8-bit weights x 8-bit activations: 0.82 off on a 3.26 output
    x = 50 * np.random.default_rng(3).normal(size=(64, 8))
    q, w = _tokens_and_weights(_tiny_quantised(tmp_path)[1], x)
    assert q.max() <= 255 and np.abs(w).max() <= WEIGHT_MAX and 2 * 255 * WEIGHT_MAX <= 32767
    assert np.array_equal(_saturating_u8s8(q, w), q @ w)
    q, w = _tokens_and_weights(_tiny_quantised(tmp_path, reduce_range=False)[1], x)
    assert not np.array_equal(_saturating_u8s8(q, w), q @ w)  # 8-bit weights would saturate


def test_rewrite_rejects_8_bit_weights(tmp_path):
    _, dynamic = _tiny_quantised(tmp_path, reduce_range=False)
    with pytest.raises(ValueError, match="reduce_range=True"):
        rewrite_per_token(dynamic)


def test_rewrite_rejects_a_model_that_is_not_dynamically_quantised(tmp_path):
    import onnx

    _tiny_quantised(tmp_path)
    with pytest.raises(ValueError, match="DynamicQuantizeLinear"):
        rewrite_per_token(onnx.load(str(tmp_path / "tiny.onnx")))


def test_the_deterministic_backend_is_registered_with_its_own_identity(monkeypatch):
    monkeypatch.delenv("HL_ENCODER_BACKEND", raising=False)
    assert "onnx-int8-token" in backend_names() and get_backend("onnx-int8-token").identity_suffix == f"+onnx-int8-token.{REVISION}"
    ids = {b: SentenceEncoder(backend=b).identity for b in backend_names()}
    assert len(set(ids.values())) == len(ids), ids  # databases embedded with another backend re-embed once
    assert ids["onnx-int8-token"].endswith(f"+onnx-int8-token.{REVISION}")  # a changed rewrite re-embeds once


def _shuffled_runs(enc: SentenceEncoder, texts: list[str]) -> list[np.ndarray]:
    """``texts``' vectors (in ``texts``' order) from shuffled batches of several sizes."""
    runs = []
    for seed, batch_size in [(0, 1), (1, 7), (2, 32), (3, 128)]:
        order = np.random.default_rng(seed).permutation(len(texts))
        enc.batch_size = batch_size
        X = enc.transform([texts[i] for i in order])
        out = np.empty_like(X)
        out[order] = X
        runs.append(out)
    return runs


@pytest.mark.parametrize("backend", ["onnx", pytest.param("onnx-int8-token", marks=pytest.mark.slow)])
def test_vectors_do_not_depend_on_batch_order_or_size(backend, real_export):
    """Every backend but onnx-int8 (whose per-batch scales are the reason the others exist);
    the default (fp32 onnx) runs in the fast selection (13 s here), the int8 one is slow-marked."""
    from hl_debug.steps.ingest import read_export, validate

    rows, _ = validate(read_export(real_export))
    distinct = sorted({r["text"] for r in rows})
    texts = distinct[:: len(distinct) // 100][:100]  # short and long ones, 100 in all
    runs = _shuffled_runs(SentenceEncoder(backend=backend), texts)
    for X in runs[1:]:
        assert np.abs(X - runs[0]).max() <= 1e-6
    if backend == "onnx-int8-token":  # int8 stays close to the fp32 computation
        fp32 = SentenceEncoder(backend="onnx").transform(texts)
        cos = (runs[0] * fp32).sum(1)
        assert cos.mean() > 0.99 and cos.min() > 0.97, (cos.mean(), cos.min())
