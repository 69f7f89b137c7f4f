"""The scaled-export generator used by the scale benchmarks."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

from hl_debug.steps.ingest import read_export, validate

_spec = importlib.util.spec_from_file_location(
    "make_scaled_export", Path(__file__).resolve().parents[1] / "benchmarks" / "make_scaled_export.py")
mse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mse)


def test_scaled_export_is_valid_deterministic_and_keeps_the_mix(tiny_records, tmp_path):
    records, flips = mse.scale(tiny_records, 400, seed=3, flip_rate=0.05)
    again, flips2 = mse.scale(tiny_records, 400, seed=3, flip_rate=0.05)
    assert records == again and flips == flips2
    other, _ = mse.scale(tiny_records, 400, seed=4, flip_rate=0.05)
    assert other != records
    rows, problems = validate(records)
    assert problems == [] and len(rows) == 400
    texts = [r["text"] for r in rows]
    assert len(set(texts)) == len(texts), "grown utterances must not be exact duplicates"
    share = Counter(r["usage"] for r in rows)
    base = Counter(r["usage"] for r in tiny_records)
    for usage, n in base.items():
        assert abs(share[usage] / 400 - n / len(tiny_records)) < 0.08
    n_annotated = sum(r["complete"] for r in rows)
    assert len(flips) == round(0.05 * n_annotated)
    by_id = {r["id"]: r for r in rows}
    for rid, flip in flips.items():
        assert by_id[rid]["intent"] == flip["flipped_to"] != flip["original"]


def test_cli_writes_zip_and_truth(tiny_export_path, tmp_path):
    out = tmp_path / "big.json.zip"
    assert mse.main(["--rows", "60", "--out", str(out), "--seed", "1", "--source", str(tiny_export_path)]) == 0
    assert len(read_export(out)) == 60
    truth = json.loads((tmp_path / "big.json.zip.truth.json").read_text())
    assert truth["seed"] == 1 and isinstance(truth["flips"], dict)
