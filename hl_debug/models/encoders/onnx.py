"""ONNX Runtime backends for the sentence encoder (``--encoder-backend onnx`` / ``onnx-int8`` /
``onnx-int8-token``).

sentence-transformers' own ONNX backend needs ``optimum-onnx``, whose releases require
transformers < 4.58 while sentence-transformers 6 requires transformers 5, so this module
does the same work directly: it exports the model's transformer to ONNX once (torch's
exporter), optionally quantises its weights to int8 (ONNX Runtime dynamic quantisation),
and runs it with ONNX Runtime plus the model's own tokenizer, pooling and normalisation.
``onnx-int8-token`` rewrites the int8 model to quantise each token's activations on their own
(:mod:`~hl_debug.models.encoders.int8_per_token`): the dynamic model's per-batch scales make a
text's vector depend on its batch-mates; fp32 and per-token int8 vectors do not.

Supported models are the common sentence-transformers layout ``Transformer → Pooling
(mean or CLS) [→ Normalize]`` (all-MiniLM-L6-v2 and most of its family). Exported files
live in a cache folder (by default ``~/.cache/hl-debug/encoders``, shared by every database), never next to the
installed model, and are written once: atomically and under a file lock.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hl_debug.errors import ModelError
from hl_debug.models.encoders.base import (
    default_cache_dir,
    load_once,
    package_version,
    register_backend,
    resolve_model_path,
)
from hl_debug.models.encoders.int8_per_token import REVISION, export_per_token

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8", "onnx-int8-token")
_FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx", "onnx-int8-token": f"model_int8_token_{REVISION}.onnx"}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def cache_folder(cache_dir: str | Path, model_name: str, version: str) -> Path:
    """The folder holding the exported files of ``model_name`` (at package ``version``)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name.strip("/"))[-80:]
    return Path(cache_dir) / (f"{safe}@{version}" if version else safe)


def _export_fp32(model_path: str, target: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    # eager attention: the traced SDPA mask path of transformers 5 is not needed and eager
    # exports to plain MatMul/Softmax that ONNX Runtime fuses and quantises well.
    model = AutoModel.from_pretrained(model_path, attn_implementation="eager").eval()

    class _Body(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    sample = tok(["a short one", "a somewhat longer sample sentence"], padding=True, return_tensors="pt")
    if "token_type_ids" not in sample:
        raise ModelError(f"ONNX backend: model at {model_path} has no token_type_ids input (only BERT-style "
                         "encoders are supported)", hint="Use --encoder-backend torch for this model.")
    tmp = target.with_suffix(".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but exact here
        torch.onnx.export(_Body(model), tuple(sample[k] for k in _INPUTS), str(tmp), input_names=list(_INPUTS),
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={k: {0: "batch", 1: "seq"} for k in (*_INPUTS, "last_hidden_state")})
    os.replace(tmp, target)


def _export_int8(fp32: Path, target: Path, *, reduce_range: bool = False) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights (per-tensor loses far more: cosine to fp32 0.964 vs 0.993 on
    # the real export); ONNX Runtime's advice to pre-process first (logged on the root
    # logger) changes nothing measurable for this model, so it is filtered out.
    def quiet(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")

    tmp = target.with_suffix(".tmp")
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range)
    finally:
        root.removeFilter(quiet)
    os.replace(tmp, target)


def ensure_exported(model_path: str, folder: Path, backend: str) -> Path:
    """Path of ``backend``'s ONNX file in ``folder``, exporting it first if it is not there."""
    target = folder / _FILES[backend]
    if target.exists():
        return target
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".export.lock")):
        fp32 = folder / _FILES["onnx"]
        if not fp32.exists():
            log.info("exporting %s to ONNX in %s (once)", model_path, folder)
            _export_fp32(model_path, fp32)
        if backend == "onnx-int8" and not target.exists():
            log.info("quantising %s to int8 (once)", fp32)
            _export_int8(fp32, target)
        if backend == "onnx-int8-token" and not target.exists():
            # 7-bit weights, so the per-token integer products never saturate (int8_per_token)
            log.info("quantising %s to 7-bit int8 weights with per-token activation scales (once)", fp32)
            int8 = folder / f"model_int8_w7.{os.getpid()}.tmp.onnx"
            try:
                _export_int8(fp32, int8, reduce_range=True)
                export_per_token(int8, target)
            finally:
                int8.unlink(missing_ok=True)
    return target


class OnnxSentenceModel:
    """A sentence-transformers model run by ONNX Runtime: tokenize → transformer → pool → normalise.

    Parameters
    ----------
    model_path:
        Folder of the sentence-transformers model (read only: tokenizer and configs).
    onnx_file:
        Exported transformer (:func:`ensure_exported`).
    threads:
        ONNX Runtime intra-op threads (0: its default, one per physical core).
    """

    def __init__(self, model_path: str, onnx_file: Path, *, threads: int = 0) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        root = Path(model_path)
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8")) \
            if (root / "modules.json").exists() else []
        types = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if types[:2] != ["Transformer", "Pooling"] or any(t not in ("Transformer", "Pooling", "Normalize") for t in types):
            raise ModelError(f"ONNX backend supports Transformer → Pooling [→ Normalize] models, not {types}",
                             hint="Use --encoder-backend torch for this model.")
        pool_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = _read_json(root / pool_dir / "config.json")
        if pooling.get("pooling_mode_mean_tokens", True):
            self.pooling = "mean"
        elif pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        else:
            raise ModelError(f"ONNX backend: unsupported pooling {pooling}", hint="Use --encoder-backend torch.")
        self.model_normalizes = "Normalize" in types
        self.max_seq_length = int(_read_json(root / "sentence_bert_config.json").get("max_seq_length", 256))
        self.dim = int(pooling.get("word_embedding_dimension") or _read_json(root / "config.json").get("hidden_size", 0))
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], *, batch_size: int = 128, normalize: bool = True) -> np.ndarray:
        """Vectors of shape ``(len(texts), dim)``, float32; batches are length-sorted like sentence-transformers."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation="longest_first",
                                 max_length=self.max_seq_length, return_tensors="np")
            feeds = {k: enc[k].astype(np.int64) for k in _INPUTS}
            hidden = self.session.run(None, feeds)[0]
            if self.pooling == "mean":
                mask = feeds["attention_mask"][..., None].astype(np.float32)
                vecs = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            else:
                vecs = hidden[:, 0]
            if normalize or self.model_normalizes:
                vecs = vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
            out[idx] = vecs
        return out


def load_onnx_model(name: str, backend: str, cache_dir: str | Path | None = None) -> OnnxSentenceModel:
    """``name`` run by ONNX Runtime (loaded once per process), exported to ``cache_dir`` first if needed."""
    folder = cache_folder(cache_dir or default_cache_dir(), name, package_version(name))

    def build() -> OnnxSentenceModel:
        path = resolve_model_path(name)
        try:
            if not Path(path).is_dir():  # a hub name: its folder in the Hugging Face cache (offline)
                from huggingface_hub import snapshot_download

                path = snapshot_download(path if "/" in path else f"sentence-transformers/{path}")
            onnx_file = ensure_exported(path, folder, backend)
            model = OnnxSentenceModel(path, onnx_file)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any export/load failure is a configuration problem
            raise ModelError(f"could not load sentence encoder {name!r} with backend {backend!r}: {exc}") from exc
        log.info("loaded sentence encoder %s (%s) from %s", name, backend, onnx_file)
        return model

    return load_once((name, backend, str(folder.resolve())), build)


def _loader(backend: str):  # noqa: ANN202
    def load(name: str, *, device: str = "cpu", cache_dir: str | Path | None = None) -> OnnxSentenceModel:
        return load_onnx_model(name, backend, cache_dir)  # ONNX Runtime runs on the CPU whatever device says

    return load


for _name in ONNX_BACKENDS:
    # the per-token backend's identity carries its rewrite's revision: a changed rewrite re-embeds once
    register_backend(_name, _loader(_name), identity_suffix=f"+{_name}.{REVISION}" if _name.endswith("-token") else None)
