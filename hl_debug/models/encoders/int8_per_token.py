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

The rewrite replaces each ``DynamicQuantizeLinear`` by ``Abs → ReduceMax(last axis) → Div →
Round → Clip → Add 128 → Cast``, and moves the activation scale out of the ``scale_a * scale_w``
product into a separate ``Mul`` after the rescaled integer product. That second move matters:
ONNX Runtime fuses ``MatMulInteger → Cast → Mul`` into ``MatMulIntegerToFloat``, which treats
the activation scale as a scalar; with a per-token scale left inside the product the fused
model is wrong (cosine to fp32 0.85 instead of 0.995).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Activations are quantised to round(x / s) + ZERO_POINT with s = max|x| / QMAX per token.
QMAX = 127.0
ZERO_POINT = 128
_EPS = 1e-12  # an all-zero token (never seen in practice) gets a tiny scale, not 0/0


def _constants() -> list:
    from onnx import numpy_helper

    values = {"pt_qmax": np.float32(QMAX), "pt_eps": np.float32(_EPS), "pt_lo": np.float32(-QMAX),
              "pt_hi": np.float32(QMAX), "pt_offset": np.float32(ZERO_POINT), "pt_one": np.float32(1.0),
              "pt_zero_point": np.uint8(ZERO_POINT)}
    return [numpy_helper.from_array(np.array(v), name) for name, v in values.items()]


def rewrite_per_token(model):  # noqa: ANN001, ANN201 - onnx.ModelProto in and out
    """``model`` (dynamically int8-quantised, modified in place) with per-token activation scales.

    Raises ValueError when the model has no ``DynamicQuantizeLinear`` or a scale is used other
    than as the rescaling of an integer MatMul (the layout :func:`quantize_dynamic` writes).
    """
    from onnx import TensorProto, helper

    graph = model.graph
    scales = {n.output[1]: n for n in graph.node if n.op_type == "DynamicQuantizeLinear"}
    if not scales:
        raise ValueError("no DynamicQuantizeLinear node: not a dynamically quantised model")
    # scale_a * scale_w products (Mul nodes reading a DynamicQuantizeLinear's scale) -> their scale
    products = {n.output[0]: next(i for i in n.input if i in scales)
                for n in graph.node if n.op_type == "Mul" and any(i in scales for i in n.input)}
    nodes = []
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            x, (q, s, zp), p = node.input[0], node.output, node.name + "_per_token"
            nodes += [
                helper.make_node("Abs", [x], [p + "_abs"], name=p + "_abs"),
                helper.make_node("ReduceMax", [p + "_abs"], [p + "_max"], axes=[-1], keepdims=1, name=p + "_max"),
                helper.make_node("Div", [p + "_max", "pt_qmax"], [p + "_s"], name=p + "_s"),
                helper.make_node("Max", [p + "_s", "pt_eps"], [s], name=p + "_scale"),
                helper.make_node("Div", [x, s], [p + "_xs"], name=p + "_xs"),
                helper.make_node("Round", [p + "_xs"], [p + "_round"], name=p + "_round"),
                helper.make_node("Clip", [p + "_round", "pt_lo", "pt_hi"], [p + "_clip"], name=p + "_clip"),
                helper.make_node("Add", [p + "_clip", "pt_offset"], [p + "_u"], name=p + "_u"),
                helper.make_node("Cast", [p + "_u"], [q], to=TensorProto.UINT8, name=p + "_q"),
                helper.make_node("Identity", ["pt_zero_point"], [zp], name=p + "_zp"),
            ]
        elif node.output[0] in products:  # scale_a * scale_w -> 1 * scale_w (per output channel)
            node.input[:] = ["pt_one" if i in scales else i for i in node.input]
            nodes.append(node)
        elif node.op_type == "Mul" and (hits := [i for i in node.input if i in products]):
            out = node.output[0]  # int product * scale_w, then * the token's scale
            node.output[0] = out + "_per_channel"
            nodes += [node, helper.make_node("Mul", [out + "_per_channel", products[hits[0]]], [out],
                                             name=node.name + "_per_token")]
        else:
            if any(i in scales for i in node.input):
                raise ValueError(f"activation scale used by {node.op_type} {node.name!r}; cannot rewrite")
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(_constants())
    return model


def export_per_token(int8_file: Path, target: Path) -> None:
    """Write the per-token rewrite of the dynamically quantised ``int8_file`` to ``target`` (atomically)."""
    import onnx

    model = rewrite_per_token(onnx.load(str(int8_file)))
    onnx.checker.check_model(model)
    tmp = target.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, target)
