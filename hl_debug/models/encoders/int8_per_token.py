"""Per-token int8 activations: the graph rewrite behind ``--encoder-backend onnx-int8-token``.

ONNX Runtime's dynamic quantisation (``onnx-int8``) quantises each MatMul's input with one
scale and zero point computed over the *whole* input tensor, i.e. over every token of every
text in the batch. A text's vector therefore depends on its batch-mates (and on how far the
batch is padded): on the bundled export the cosine of a text with itself across two batch
orders drops to 0.96. This module rewrites the dynamically quantised model so that every
*token* gets its own scale (symmetric, ``max|x| / 127``, stored as uint8 around a fixed zero
point of 128, so the fast u8s8 integer kernels still apply). Integer products are exact and
every other op works token by token or text by text, so a text's vector depends only on the
text: the same in any batch, at any batch size, in any order.

The weights must be 7-bit (``quantize_dynamic(..., reduce_range=True)``): on x86 CPUs without
VNNI, ONNX Runtime's u8s8 kernels multiply with ``vpmaddubsw``, which adds two uint8 x int8
products in a saturating int16, and 8-bit activations (up to 255) times 8-bit weights (up to
127) reach 64,770 and are clipped at 32,767 (0.82 off on a 3.26 output of the tiny test graph,
on CI's CPU). With weights in [-64, 64] every pair stays within 2 x 255 x 64 = 32,640, so the
integer product is exact on every CPU and the vectors are the same on a VNNI and a non-VNNI
machine. (7-bit weights cost less than 7-bit activations: mean cosine to fp32 on the bundled
export 0.9956 vs 0.9933; 8-bit both, exact only on VNNI, 0.9969.)

The rewrite replaces each ``DynamicQuantizeLinear`` by a per-token scale (``ReduceMax`` and
``ReduceMin`` over the features) and one per-axis ``QuantizeLinear`` over the (tokens,
features) view of the activations, and each ``MatMulInteger → Cast → Mul(scale_a * scale_w)``
by ``MatMulIntegerToFloat`` (scale_w per output channel) followed by a ``Mul`` with the
token's scale. The activation scale must leave the product: ONNX Runtime itself fuses that
chain into ``MatMulIntegerToFloat``, which takes the activation scale as a scalar, so a
per-token scale left inside it gives a wrong model (cosine to fp32 0.85 instead of 0.995).
Written this way the per-token model runs at 0.9x the dynamic one's speed on one thread; on two
free cores 0.7x, as the per-token reductions and rescaling run on one thread (on the bundled
export 1.4-2.6x torch, 1-2x fp32 ONNX, depending on the load; benchmarks/encoder_determinism.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Activations are quantised to round(x / s) + ZERO_POINT with s = max|x| / QMAX per token.
QMAX = 127.0
ZERO_POINT = 128
#: Largest |weight| the rewrite accepts (7-bit weights; see the module docstring).
WEIGHT_MAX = 64
#: Bumped whenever the rewrite changes the vectors: part of the cached file's name and of the
#: backend's identity, so a changed rewrite is re-exported and old vectors are re-embedded once.
REVISION = "w7"
_EPS = 1e-12  # an all-zero token (never seen in practice) gets a tiny scale, not 0/0


def _constants() -> list:
    from onnx import numpy_helper

    values = {"pt_qmax": np.float32(QMAX), "pt_eps": np.float32(_EPS), "pt_one": np.float32(1.0),
              "pt_zero_point": np.uint8(ZERO_POINT),
              "pt_flat": np.array([-1], dtype=np.int64)}
    return [numpy_helper.from_array(np.array(v), name) for name, v in values.items()]


def _check_7_bit(name: str, weights: dict) -> None:
    from onnx import numpy_helper

    if name in weights and np.abs(numpy_helper.to_array(weights[name]).astype(np.int32)).max() > WEIGHT_MAX:
        raise ValueError(f"weights {name!r} use 8 bits: an int8 product could saturate on a CPU without VNNI; "
                         "quantise with quantize_dynamic(..., reduce_range=True)")


def rewrite_per_token(model):  # noqa: ANN001, ANN201 - onnx.ModelProto in and out
    """``model`` (dynamically int8-quantised, modified in place) with per-token activation scales.

    Raises ValueError when the model has no ``DynamicQuantizeLinear``, a scale is used other
    than as the rescaling of an integer MatMul (the layout :func:`quantize_dynamic` writes), or
    the weights are not 7-bit (``reduce_range=True``).
    """
    from onnx import helper

    graph = model.graph
    scales = {n.output[1]: n for n in graph.node if n.op_type == "DynamicQuantizeLinear"}
    if not scales:
        raise ValueError("no DynamicQuantizeLinear node: not a dynamically quantised model")
    producer = {out: n for n in graph.node for out in n.output}
    weights = {i.name: i for i in graph.initializer}
    # quantize_dynamic writes, per MatMul: q, s = DynamicQuantizeLinear(x); p = Mul(s, scale_w);
    # Mul(Cast(MatMulInteger(q, w)), p). The last three become one MatMulIntegerToFloat (scale_w
    # per output channel) followed by a Mul with the token's scale.
    fused, rescale, dropped = {}, {}, set()
    for node in graph.node:
        hits = [i for i in node.input if i in producer and producer[i].op_type == "Mul"
                and any(j in scales for j in producer[i].input)] if node.op_type == "Mul" else []
        if not hits:
            continue
        product = producer[hits[0]]
        cast = producer.get(next(i for i in node.input if i != hits[0]))
        matmul = producer.get(cast.input[0]) if cast is not None and cast.op_type == "Cast" else None
        if matmul is None or matmul.op_type != "MatMulInteger":
            raise ValueError(f"activation scale of {node.name!r} does not rescale a MatMulInteger; cannot rewrite")
        _check_7_bit(matmul.input[1], weights)
        scale_a = next(i for i in product.input if i in scales)
        scale_w = next(i for i in product.input if i != scale_a)
        fused[matmul.name] = (scale_w, node.output[0] + "_per_channel")
        rescale[node.name] = scale_a
        dropped |= {product.name, cast.name}
    nodes = []
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            x, (q, s, _), p = node.input[0], node.output, node.name + "_per_token"
            # max|x| per token from two reductions (no |x| tensor written); the token rows are then
            # quantised by one per-axis QuantizeLinear over the (tokens, features) view of x
            nodes += [
                helper.make_node("ReduceMax", [x], [p + "_hi"], axes=[-1], keepdims=1, name=p + "_hi"),
                helper.make_node("ReduceMin", [x], [p + "_lo"], axes=[-1], keepdims=1, name=p + "_lo"),
                helper.make_node("Neg", [p + "_lo"], [p + "_neg"], name=p + "_neg"),
                helper.make_node("Max", [p + "_hi", p + "_neg"], [p + "_absmax"], name=p + "_absmax"),
                helper.make_node("Div", [p + "_absmax", "pt_qmax"], [p + "_s"], name=p + "_s"),
                helper.make_node("Max", [p + "_s", "pt_eps"], [s], name=p + "_scale"),
                helper.make_node("Shape", [x], [p + "_shape"], name=p + "_shape"),
                helper.make_node("Flatten", [x], [p + "_rows"], axis=-1, name=p + "_rows"),
                helper.make_node("Reshape", [s, "pt_flat"], [p + "_s1"], name=p + "_s1"),
                helper.make_node("Shape", [p + "_s1"], [p + "_n"], name=p + "_n"),
                helper.make_node("Expand", ["pt_zero_point", p + "_n"], [p + "_zp"], name=p + "_zp"),
                helper.make_node("QuantizeLinear", [p + "_rows", p + "_s1", p + "_zp"], [p + "_q"], axis=0,
                                 name=p + "_q"),
                helper.make_node("Reshape", [p + "_q", p + "_shape"], [q], name=p + "_unrows"),
            ]
        elif node.name in fused:
            scale_w, out = fused[node.name]
            a, w, _, zero_w = node.input
            nodes.append(helper.make_node("MatMulIntegerToFloat", [a, w, "pt_one", scale_w, "pt_zero_point", zero_w],
                                          [out], name=node.name + "_to_float", domain="com.microsoft"))
        elif node.name in rescale:
            nodes.append(helper.make_node("Mul", [node.output[0] + "_per_channel", rescale[node.name]],
                                          [node.output[0]], name=node.name + "_per_token"))
        elif node.name not in dropped:
            if any(i in scales or i in {n.output[2] for n in scales.values()} for i in node.input):
                raise ValueError(f"activation scale used by {node.op_type} {node.name!r}; cannot rewrite")
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(_constants())
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def export_per_token(int8_file: Path, target: Path) -> None:
    """Write the per-token rewrite of the dynamically quantised ``int8_file`` to ``target`` (atomically)."""
    import onnx

    model = rewrite_per_token(onnx.load(str(int8_file)))
    onnx.checker.check_model(model)
    tmp = target.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, target)
