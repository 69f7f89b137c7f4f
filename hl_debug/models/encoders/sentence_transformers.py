"""The ``torch`` backend: the model run by sentence-transformers (PyTorch).

Its vectors keep the historical identity (no backend suffix), so caches made before
backends existed stay valid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from hl_debug.errors import ModelError
from hl_debug.models.encoders.base import load_once, register_backend, resolve_model_path

log = logging.getLogger(__name__)


class TorchSentenceModel:
    """A loaded ``SentenceTransformer`` behind the backend interface (``dim``, ``encode``)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        # sentence-transformers 6 renamed the method; support both.
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: Sequence[str], *, batch_size: int = 128, normalize: bool = True) -> np.ndarray:
        """Vectors of shape ``(len(texts), dim)``, float32."""
        vecs = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


def load_sentence_transformer(name: str, device: str = "cpu") -> Any:
    """The ``SentenceTransformer`` ``name`` on ``device``, loaded once per process."""

    def build() -> Any:
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(name)
        log.info("loading sentence encoder %s from %s", name, path)
        try:
            return SentenceTransformer(path, device=device)
        except Exception as exc:  # noqa: BLE001 - any load failure is a configuration problem
            raise ModelError(f"could not load sentence encoder {name!r}: {exc}") from exc

    return load_once((name, device), build)


def load_torch(name: str, *, device: str = "cpu", cache_dir: Any = None) -> TorchSentenceModel:
    """Backend loader (``cache_dir`` is unused: nothing is exported)."""
    return load_once(("torch-adapter", name, device), lambda: TorchSentenceModel(load_sentence_transformer(name, device)))


register_backend("torch", load_torch, identity_suffix="")
