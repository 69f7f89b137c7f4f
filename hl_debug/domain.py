"""hl-debug's vocabulary, declared once: splits, review actions, and text identity.

Every module that names a split, an evaluation split, a review action or "unannotated"
imports it from here, so the words cannot drift apart between ingest, scoring, storage,
the CLI and the web app.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

#: The platform's ``usage`` values (a row may also have none: ``None``).
SPLITS: Final = ("training", "validation", "testing")
TRAINING: Final = "training"
#: The splits a model is evaluated on, in the order reports list them.
EVAL_SPLITS: Final = ("testing", "validation")
#: Row selections a model report can be computed for: ``evaluation`` is testing + validation.
REPORT_SPLITS: Final = ("evaluation", "testing", "validation", "training", "all")
#: How a row without a split is named where a name is needed (counts, exports).
NO_SPLIT: Final = "none"
#: How an utterance without an intent is named where a name is needed.
UNANNOTATED: Final = "unannotated"

#: Review decisions. ``relabel``/``accept``/``keep``/``out_of_scope`` set the effective label;
#: ``skip`` never does. ``out_of_scope`` labels a row with :data:`OUT_OF_SCOPE`.
ACTIONS: Final = ("relabel", "accept", "keep", "skip", "out_of_scope")
LABELLING_ACTIONS: Final = ("relabel", "accept", "keep", "out_of_scope")
#: The reserved intent name of utterances that fit no intent (the ``out_of_scope`` action's label).
OUT_OF_SCOPE: Final = "out_of_scope"
#: The longest intent name a review may create.
MAX_INTENT_NAME: Final = 100


def text_hash(text: str) -> str:
    """Stable identity of an utterance's text (SHA-1 of its UTF-8 bytes, hex)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def hash_json(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (keys sorted)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

#: The largest utterance id hl-debug accepts: 2**53 - 1, the largest integer a browser (a
#: JavaScript number) holds exactly. Ingest refuses negative and larger ids, so every row
#: stays reachable in the web app; lookups of other ids answer "not found".
MAX_ID: Final = 2**53 - 1
