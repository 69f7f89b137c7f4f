"""The recorded answer source: a file of predict answers recorded earlier.

The file is a JSON array of answer items (``{"data": {"text": ...}, "predictions": [...]}``,
the contract's answer shape, :func:`~hl_debug.sources.remote.parse_item`). Items carrying
``data.text`` are matched to utterances by text; items without it must be one per utterance in
export order. :func:`read_recorded` validates every item before anything is used and returns a
:class:`RecordedSource` holding the answers by text hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hl_debug.domain import text_hash
from hl_debug.errors import AnswerShapeError, PredictionsFileError
from hl_debug.sources.base import BatchOutcome, ClientStats, Query, Ranked
from hl_debug.sources.remote import parse_item


def recorded_identity(path: str | Path) -> str:
    """Cache identity of a recorded file: ``recorded:<file name up to its first dot>``."""
    return f"recorded:{Path(path).name.split('.')[0]}"


@dataclass
class RecordedSource:
    """Recorded answers by text hash (see :func:`read_recorded`).

    Attributes
    ----------
    identity : the cache identity of these answers
    answers_by_hash : the first answer recorded for each matched text hash, in file order
    n_items, n_unmatched, n_conflicting : items in the file, items whose text is not in the
        database, texts whose later answers rank different labels (the first one is kept)
    """

    identity: str
    answers_by_hash: dict[str, Ranked]
    n_items: int = 0
    n_unmatched: int = 0
    n_conflicting: int = 0
    path: str = ""
    needs_vectors = False
    _stats: ClientStats = field(default_factory=ClientStats)

    @property
    def parameters(self) -> dict[str, Any]:
        return {"file": self.path, "endpoint": self.identity}

    @property
    def stats(self) -> ClientStats:
        return self._stats

    def answers(self, query: Query) -> Iterator[BatchOutcome]:
        """One batch: the recorded answers of the texts asked; fails if a text was not recorded."""
        texts = list(query.texts)
        ranked = [self.answers_by_hash.get(text_hash(t)) for t in texts]
        self._stats.requests += 1
        self._stats.texts_sent += len(texts)
        missing = sum(r is None for r in ranked)
        if missing:
            yield BatchOutcome(0, texts, error=f"{missing} text(s) are not in the recorded file {self.path}")
        else:
            yield BatchOutcome(0, texts, answers=[r for r in ranked if r is not None], attempts=1)


def read_recorded(path: str | Path, by_position: Sequence[str], *, endpoint: str | None = None,
                  output: str | None = "intent") -> RecordedSource:
    """Parse the recorded file ``path`` and match its items to utterances.

    Parameters
    ----------
    by_position:
        The utterances' text hashes in export order (to match items without ``data.text``).
    endpoint:
        Identity of the answers (default :func:`recorded_identity`).
    output:
        Prediction head to read.

    Raises
    ------
    PredictionsFileError
        The file cannot be read, is not a non-empty JSON array, has invalid items (all are
        listed, up to 20), or none of its items matches an utterance.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise PredictionsFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PredictionsFileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise PredictionsFileError(f"{path}: expected a non-empty JSON array of answer items")
    known = set(by_position)
    answers: dict[str, Ranked] = {}
    n_unmatched = n_conflicting = 0
    problems: list[str] = []
    for i, item in enumerate(items):
        data = item.get("data") if isinstance(item, dict) else None
        text = data.get("text") if isinstance(data, dict) else None
        try:
            ranked = parse_item(item, i, output=output)
        except AnswerShapeError as exc:
            problems.append(exc.message)
            continue
        if isinstance(text, str):
            h = text_hash(text)
            if h not in known:
                n_unmatched += 1
                continue
        elif len(items) == len(by_position):
            h = by_position[i]
        else:
            problems.append(f"answer item {i}: no 'data.text' to match it by, and the file has {len(items)} "
                            f"items for {len(by_position)} utterances (so export order cannot be used)")
            continue
        if h in answers:
            n_conflicting += int([lbl for lbl, _ in answers[h]] != [lbl for lbl, _ in ranked])
            continue
        answers[h] = ranked
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise PredictionsFileError(f"{path} has {len(problems)} invalid answer item(s); nothing was imported:\n"
                                   f"{shown}{more}")
    if not answers:
        raise PredictionsFileError(f"none of the {len(items)} answer items of {path} matches an utterance's text",
                                   hint="Import answers recorded for this export (check --db).")
    return RecordedSource(endpoint or recorded_identity(path), answers, n_items=len(items),
                          n_unmatched=n_unmatched, n_conflicting=n_conflicting, path=str(path))
