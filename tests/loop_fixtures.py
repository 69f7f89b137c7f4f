"""A small synthetic project for the closed-loop tests (retrain, compare, the /compare page):
three intents with their own vocabularies, every split, unannotated rows, and planted label
errors in the training rows that a review can fix."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hl_debug.steps.embed import embed
from hl_debug.steps.ingest import ingest
from hl_debug.steps.predict import predict
from hl_debug.storage import Store
from tests.fakes import FakeEncoder

WORDS = {
    "card_issue": "card atm stuck blocked pin declined chip contactless".split(),
    "bill_question": "bill invoice charge payment due amount statement fee".split(),
    "chat_settings": "rename chat voice language notifications theme settings name".split(),
}
FILLER = "please my the a i want to can you help with".split()


def records(seed: int = 0, n_per_intent: int = 40, flips: int = 12) -> tuple[list[dict], list[int]]:
    """Export records and the ids of the planted label errors (training rows only)."""
    rng = random.Random(seed)
    out, flipped = [], []
    intents = sorted(WORDS)
    uid = 1
    for intent in intents:
        for k in range(n_per_intent):
            words = rng.sample(WORDS[intent], 3) + rng.sample(FILLER, 2)
            rng.shuffle(words)
            usage = "training" if k < 24 else "validation" if k < 30 else "testing" if k < 36 else None
            out.append({"id": uid, "project_id": 7, "complete": usage is not None, "usage": usage, "score": 0.0,
                        "data": json.dumps({"text": " ".join(words) + f" {uid}", "intent": intent if usage else ""})})
            uid += 1
    training = [r for r in out if r["usage"] == "training"]
    for r in rng.sample(training, flips):
        data = json.loads(r["data"])
        data["intent"] = rng.choice([i for i in intents if i != data["intent"]])
        r["data"] = json.dumps(data)
        flipped.append(r["id"])
    return out, flipped


def true_label(rec: dict) -> str:
    text = json.loads(rec["data"])["text"].split()
    return max(WORDS, key=lambda i: sum(w in WORDS[i] for w in text))


def loop_store(tmp_path: Path, *, seed: int = 0) -> tuple[Store, list[dict], list[int]]:
    """A store with the synthetic export ingested, embedded (FakeEncoder) and predicted by the
    local model trained on the original labels (version 1)."""
    recs, flipped = records(seed)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "loop_export.json"
    path.write_text(json.dumps(recs), encoding="utf-8")
    store = Store(tmp_path / "loop.db")
    ingest(store, path)
    enc = FakeEncoder()
    embed(store, enc, progress=False)
    predict(store, encoder=enc.identity, progress=False)
    return store, recs, flipped
