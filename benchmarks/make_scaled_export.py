"""Grow a realistic larger export from the real one, for scale benchmarks.

New utterances are made by recombining and perturbing real ones of the same intent (word
substitutions, reorderings, typos, half-and-half recombination), so near-duplicates are
never exact copies. The mix of splits, intents and annotated/unannotated rows follows the
real export, and a known fraction of annotated rows gets a planted label flip; the flipped
ids are written beside the export (``<out>.truth.json``) so detectors can be scored.

Deterministic for a seed.

Example::

    python benchmarks/make_scaled_export.py --rows 20000 --out /tmp/scaled-20k.json.zip --seed 0
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hl_debug.steps.ingest import read_export  # noqa: E402

log = logging.getLogger("make_scaled_export")

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "chatbot_intent_classifier_data.json.zip"

# Small, hand-picked substitutions that keep an utterance's meaning.
SYNONYMS: dict[str, list[str]] = {
    "my": ["our", "the"], "please": ["pls", "kindly", "plz"], "can": ["could", "would"],
    "want": ["wish", "need", "would like"], "need": ["want", "have"], "what": ["what's", "which"],
    "how": ["in what way", "how exactly"], "is": ["was"], "tell": ["show", "let"], "me": ["us"],
    "i": ["we"], "check": ["see", "look up", "verify"], "find": ["get", "look up"],
    "change": ["update", "modify", "switch"], "new": ["another", "a fresh"], "card": ["card", "cards"],
    "bill": ["invoice", "bill"], "pay": ["settle", "pay off"], "much": ["many"], "help": ["assist"],
    "do": ["should"], "you": ["u", "ya"], "know": ["say", "see"], "get": ["obtain", "receive"],
    "give": ["send", "provide"], "show": ["display", "tell"], "cancel": ["stop", "end"],
    "hi": ["hello", "hey"], "thanks": ["thank you", "thx"], "account": ["acct", "account"],
}
KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"
FILLERS_START = ["hey, ", "hi, ", "ok ", "so ", "quick question: ", "um ", "excuse me, "]
FILLERS_END = [" please", " thanks", " asap", " right now", " today", "?", " for me"]


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:  # swap
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:  # drop
        return word[:i] + word[i + 1:]
    if kind == 2:  # double
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice(KEYBOARD) + word[i + 1:]  # replace


def perturb(text: str, donors: list[str], rng: random.Random) -> str:
    """A new utterance of the same intent as ``text`` (``donors``: other texts of that intent)."""
    words = text.split()
    if len(donors) > 1 and rng.random() < 0.25 and len(words) > 3:
        other = rng.choice(donors).split()
        if len(other) > 3:
            words = words[: len(words) // 2] + other[len(other) // 2:]
    ops = rng.randint(1, 3)
    for _ in range(ops):
        op = rng.random()
        if op < 0.35:
            idx = [i for i, w in enumerate(words) if w.lower() in SYNONYMS]
            if idx:
                i = rng.choice(idx)
                words[i] = rng.choice(SYNONYMS[words[i].lower()])
                continue
        if op < 0.55 and len(words) > 2:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op < 0.8 and words:
            i = rng.randrange(len(words))
            words[i] = _typo(words[i], rng)
        elif rng.random() < 0.5:
            words.insert(0, rng.choice(FILLERS_START).strip())
        else:
            words.append(rng.choice(FILLERS_END).strip())
    return " ".join(w for w in words if w)


def scale(records: list[dict], rows: int, *, seed: int = 0, flip_rate: float = 0.03,
          start_id: int = 10_000_000) -> tuple[list[dict], dict[int, dict]]:
    """Return ``rows`` records (the real ones first, then grown ones) and the planted flips.

    Flips: ``{id: {"original": intent, "flipped_to": intent}}`` over annotated grown rows
    and real rows alike, ``flip_rate`` of all annotated rows.
    """
    rng = random.Random(seed)
    parsed = []
    for rec in records:
        data = json.loads(rec["data"]) if isinstance(rec["data"], str) else rec["data"]
        parsed.append((rec, data["text"], data["intent"]))
    by_intent: dict[str, list[str]] = defaultdict(list)
    for _, text, intent in parsed:
        by_intent[intent].append(text)
    out = [dict(rec) for rec, _, _ in parsed][:rows]
    seen = {t for _, t, _ in parsed}
    next_id = max(start_id, max(r["id"] for r in records) + 1)
    while len(out) < rows:
        rec, text, intent = rng.choice(parsed)
        for _ in range(10):
            new = perturb(text, by_intent[intent], rng)
            if new not in seen:
                break
        else:
            new = f"{new} {rng.choice(FILLERS_END).strip()} {len(out)}"
        seen.add(new)
        out.append({
            "id": next_id, "project_id": rec["project_id"], "complete": rec["complete"], "usage": rec["usage"],
            "score": max(0.0, float(rec["score"]) * rng.uniform(0.7, 1.3)),
            "data": json.dumps({"text": new, "intent": intent}),
        })
        next_id += 1
    intents = sorted(i for i in by_intent if i)
    annotated = [i for i, r in enumerate(out) if r["complete"]]
    flips: dict[int, dict] = {}
    for i in rng.sample(annotated, int(round(flip_rate * len(annotated)))):
        data = json.loads(out[i]["data"])
        new_intent = rng.choice([x for x in intents if x != data["intent"]])
        flips[out[i]["id"]] = {"original": data["intent"], "flipped_to": new_intent}
        out[i]["data"] = json.dumps({"text": data["text"], "intent": new_intent})
    return out, flips


def write(records: list[dict], out: Path) -> None:
    """Write ``records`` as JSON, zipped when ``out`` ends in ``.zip`` (fixed timestamp: byte-stable)."""
    text = json.dumps(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            info = zipfile.ZipInfo(out.name[: -len(".zip")] or "export.json", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
        out.write_bytes(buf.getvalue())
    else:
        out.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="number of records in the new export")
    ap.add_argument("--out", type=Path, required=True, help="output file (.json or .json.zip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flip-rate", type=float, default=0.03, help="share of annotated rows with a planted flip")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the real export to grow from")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    records, flips = scale(read_export(args.source), args.rows, seed=args.seed, flip_rate=args.flip_rate)
    write(records, args.out)
    truth = args.out.with_name(args.out.name + ".truth.json")
    truth.write_text(json.dumps({"seed": args.seed, "flip_rate": args.flip_rate, "flips": flips}, indent=1))
    log.info("wrote %d records to %s (%d planted flips listed in %s)", len(records), args.out, len(flips), truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
