"""The ``embed`` step: every utterance's text to a vector of the configured encoder.

The encoders themselves (protocol, backends, the default one) live in
:mod:`hl_debug.models.encoders`; this step reads texts from the store, hands them to the
encoder in chunks and saves the vectors by (encoder identity, text hash).
"""

from __future__ import annotations

import logging
from typing import Any

from hl_debug.engines import Engine, as_engine
from hl_debug.models.encoders import Encoder, default_encoder
from hl_debug.storage import Store, hash_json, package_versions

log = logging.getLogger(__name__)


def embed(store: Store, encoder: Encoder | None = None, *, chunk_size: int = 512,
          progress: bool = True, engine: Engine | str | None = None, ray_address: str | None = None) -> dict[str, Any]:
    """Embed every utterance whose text has no vector yet for ``encoder``.

    ``encoder`` is any :class:`~hl_debug.models.encoders.Encoder` (``transform(texts) -> (n, dim)
    array`` and an ``identity`` string; default: :func:`~hl_debug.models.encoders.default_encoder`).
    Vectors are saved chunk by chunk, so an interrupted run continues where it stopped. Records
    the active encoder in the store. Returns counts ``n_texts``, ``n_embedded``, ``n_cached``.
    ``engine`` (an :class:`~hl_debug.engines.Engine` or its name; None: ``HL_ENGINE``, else local)
    runs the encoder; either way the vectors come back ``chunk_size`` at a time and are saved here.
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
                runner = as_engine(engine, address=ray_address)
                for rows, vecs in runner.encode(encoder, [texts[h] for h in todo], batch_size=chunk_size):
                    chunk = [todo[i] for i in rows]
                    store.save_embeddings(identity, chunk, vecs)
                    counts["n_embedded"] += len(chunk)
                    bar.update(len(chunk))
            run_counts.update({k: v for k, v in counts.items() if k != "skipped"})
    store.set_meta("active_encoder", identity)
    return counts


def encoder_from_options(options: dict[str, Any]) -> Encoder:
    """``options['encoder']``: an encoder object, or a model name (None: the setting) with
    ``options['encoder_backend']``."""
    enc = options.get("encoder")
    if enc is None or isinstance(enc, str):
        return default_encoder(enc, options.get("encoder_backend"))
    return enc


def embed_step(store: Store, options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline adapter: ``options['encoder']`` may hold a name or an encoder object."""
    return embed(store, encoder_from_options(options), progress=options.get("progress", True),
                 engine=options.get("engine"), ray_address=options.get("ray_address"))
