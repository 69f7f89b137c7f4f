"""Every benchmark script runs: each in its quick mode, as a subprocess from the repository root.

The benchmarks are scripts a person runs by hand, so nothing else would notice when one of
them drifts from the library (one called a private method with a missing argument for
months). Each test runs one script as ``python benchmarks/<script>.py <quick flags>`` and
checks it exits 0 and prints a figure row of its table, not only that it finished. The ones
that load the real encoder are ``slow``; the Chromium one is ``browser``. The ones that read
the real export (``../shared/data``, beside the repository) take the ``real_export`` fixture.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, timeout: int = 300) -> str:
    """Run ``benchmarks/<name>.py`` with ``args``; returns what it printed and logged (fails with its stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout + "\n" + proc.stderr  # figures on stdout; scripts that log say what they wrote on stderr


def figure_row(out: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row of ``out`` whose first cell is ``first_cell``."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r} in:\n{out}")


NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def is_number(cell: str) -> bool:
    return bool(NUMBER.match(cell))


# -- quick, synthetic data: no model to load ---------------------------------------------


def test_webapp_payload_times_the_map_data_on_a_synthetic_database():
    row = figure_row(run_script("webapp_payload", "--sizes", "300"), "300")
    assert row[1] == "after"
    assert all(is_number(c) for c in row[2:]), row  # every figure is a number (none missing)


def test_webapp_payload_times_every_route_on_a_synthetic_database():
    out = run_script("webapp_payload", "--routes-synthetic", "300")
    for route in ("GET /api/points", "GET /api/neighbors/<id>", "POST relabel", "start -> /api/points answered"):
        assert is_number(figure_row(out, route)[1]), route


def test_predict_throughput_times_training_and_answering_on_a_synthetic_database():
    out = run_script("predict_throughput", "--synthetic", "300", "--http-n", "60")
    before, after = figure_row(out, "before"), figure_row(out, "after")
    assert is_number(before[1]) and is_number(after[1])
    assert after[5] == "1.0000"  # the two training variants give the same top labels on this data
    assert figure_row(out, "in-process, chunks of 2048")[1] == "300"
    assert figure_row(out, "loopback HTTP, 20 per request, concurrency 4")[1] == "60"


def test_make_scaled_export_writes_an_export(real_export, tmp_path):
    out = tmp_path / "scaled.json.zip"
    printed = run_script("make_scaled_export", "--rows", "300", "--out", str(out), "--seed", "0")
    assert re.search(r"wrote 300 records to .*\(\d+ planted flips", printed), printed
    assert out.exists() and Path(str(out) + ".truth.json").exists()


def test_make_banking_export_writes_an_export(tmp_path):
    source = ROOT.parent / "shared" / "data" / "banking77"
    if not (source / "train.csv").exists():
        pytest.skip(f"banking77 not found at {source}")
    out = tmp_path / "banking.json"
    printed = run_script("make_banking_export", "--out", str(out), "--rows", "300")
    assert re.search(r"banking77 export: 300 rows, \d+ intents, \d+ annotated", printed), printed
    assert out.exists() and Path(str(out) + ".truth.json").exists()


# -- the real encoder or the real export ---------------------------------------------------


@pytest.mark.slow
def test_embed_throughput_and_analyze_stages(real_export):
    out = run_script("embed_throughput", "--limit", "150", "--batch-sizes", "32", "--analyze")
    assert is_number(figure_row(out, "32")[2])
    assert is_number(figure_row(out, "UMAP 2-D (map)")[1])
    assert re.search(r"\| HDBSCAN \(min_cluster_size=\d+, min_samples=\d+, cluster_selection_epsilon=[\d.]+\) \| [\d.]+ \|",
                     out)


@pytest.mark.slow
def test_encoder_backends(real_export):
    out = run_script("encoder_backends", "--limit", "200", "--backends", "onnx-int8", "--batch-sizes", "32")
    assert is_number(figure_row(out, "onnx-int8")[4])  # utt/s


@pytest.mark.slow
def test_encoder_determinism_and_its_effect_on_findings(real_export):
    out = run_script("encoder_determinism", "--quick", "--backends", "onnx,onnx-int8", "--findings", "--seeds", "1")
    row = figure_row(out, "onnx")
    assert row[3] == "1.0000" and row[5] == "0"  # fp32: a text's vector never depends on its batch
    effect = figure_row(out.split("label-issue AUPRC", 1)[1], "onnx-int8")  # the findings table
    assert len(effect) == 4 and all(is_number(c) and 0 <= float(c) <= 1 for c in effect[1:]), effect


@pytest.mark.slow  # numba compiles UMAP in the child process unless its cache is warm
def test_analyze_scaling_fits_in_a_fresh_process():
    out = run_script("analyze_scaling", "--synthetic", "200", "--variants", "cache-warm", "--numba-cache", "existing")
    row = figure_row(out, "200")
    assert row[1] == "cache-warm" and is_number(row[2]) and is_number(row[3])
    assert re.fullmatch(r"[0-9a-f]{16}", row[4]) and is_number(row[5]), row


@pytest.mark.slow
def test_label_noise(real_export, tmp_path):
    out = run_script("label_noise", "--quick", "--json", str(tmp_path / "noise.json"))
    for cell in ("banking uniform 5%", "bundled +5% flips"):
        row = figure_row(out, cell)
        assert row[1] == "**hl-debug**" and all(is_number(c) for c in row[2:5]), row
    counts = figure_row(out.split("| cell | true errors")[1], "bundled +5% flips")
    assert re.match(r"\d+ \[\d+, \d+\]", counts[2]), counts  # estimate [interval]
    assert re.match(r"-?\d+ \([+-]\d+%\)", counts[3]), counts  # estimate - the clean data's estimate
    review = out.split("| cell | K |")[1]
    assert re.search(r"\| bundled \+5% flips \| 300 \| \d+ \| \d+ \[\d+, \d+\]", review), review
    assert "banking grouped 5%" in out  # the grouped-errors cell runs in quick mode too


@pytest.mark.slow  # the real encoder's banking77 vectors (cached after the first run)
def test_stacker_solver_quick():
    if not (ROOT.parent / "shared" / "data" / "banking77" / "train.csv").exists():
        pytest.skip("banking77 not found")
    out = run_script("stacker_solver", "--quick")
    before = figure_row(out, "77 intents")
    assert before[1] == "3,000" and before[3] == "lbfgs (before)"
    assert all(is_number(c) for c in before[4:]), before
    assert 0 <= int(before[8]) <= 100  # top-100 shared between the two solvers
    assert "newton-cholesky (shipped)" in out


@pytest.mark.slow
def test_queue_simulation(real_export):
    if not (ROOT.parent / "shared" / "data" / "banking77" / "train.csv").exists():
        pytest.skip("banking77 not found")
    out = run_script("queue_simulation", "--quick", "--topics", "40")
    for method in ("hl-debug", "random", "entropy", "farthest-first"):
        row = figure_row(out, method)
        assert all(re.fullmatch(r"0\.\d{3} ± 0\.\d{3}", c) for c in row[1:4]), row  # accuracy at N = 50, 100, 200
        assert is_number(row[4]) and is_number(row[5]), row  # intents in the top 20 / 50
    topics = figure_row(out, "40")
    assert all(is_number(c) for c in topics[1:5]), topics


@pytest.mark.slow  # the real encoder's banking77 vectors (cached after the first run)
def test_clusters_benchmark_quick_mode():
    if not (ROOT.parent / "shared" / "data" / "banking77" / "train.csv").exists():
        pytest.skip("banking77 not found beside the repository")
    out = run_script("clusters", "--quick")
    for rule in ("baseline", "hl-debug"):
        row = figure_row(out, "banking uniform 5%") if rule == "baseline" else next(
            [c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| banking uniform 5% | hl-debug |"))
        assert row[1] == rule and all(is_number(c) for c in row[2:3] + row[4:7] + row[8:]), row
        assert re.fullmatch(r"\d+ \(\d+\)", row[3]), row
        assert re.fullmatch(r"\d+ → \d+ \([\d,]+\)" if rule == "hl-debug" else "–", row[7]), row


@pytest.mark.slow
def test_out_of_scope_benchmark_scores_a_small_banking_case():
    row = figure_row(run_script("out_of_scope", "--quick"), "banking +10 unknown, seed 0")
    assert all(is_number(c) for c in row[1:]), row  # AUROC of every method, AUPRC, FPR@95, seconds


@pytest.mark.slow  # reads banking77 and the real export; embeds them unless benchmarks/cases.py's cache is warm
def test_taxonomy_quick(real_export):
    out = run_script("taxonomy", "--quick")
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith(("| banking77", "| bundled"))]
    ours = {(r[0], r[1], r[2]): r for r in rows if r[2].startswith("hl-debug")}
    # the split (3 ways: raw, own splits left out, hits = planted + multi-meaning) and the merge
    # detector on both cases, beside their baselines
    assert len(ours) == 8, rows
    assert len(rows) == 20 and all(is_number(c) and 0 <= float(c) <= 1 for r in rows for c in r[3:5]), rows
    assert "stop/cancel spread in the top three: yes" in out and "credit-limit boundary in the top three: yes" in out


@pytest.mark.slow
def test_predict_throughput_against_the_local_model_server(real_export, tmp_path):
    out = run_script("predict_throughput", "--n", "40", "--concurrency", "1", "--modes", "encode,cached", "--limit", "400",
                     "--db", str(tmp_path / "predict.db"))
    assert figure_row(out, "encode")[2] == "40" and figure_row(out, "cached")[2] == "40"


@pytest.mark.slow
def test_pipeline_times_each_step(real_export, tmp_path):
    out = run_script("pipeline", "--sizes", "200", "--scenarios", "cold", "--workdir", str(tmp_path))
    row = figure_row(out, "200")
    assert row[1] == "cold" and all(is_number(c) for c in row[2:]), row


@pytest.mark.browser
def test_webapp_browser_on_a_synthetic_database():
    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium not installed")
    row = figure_row(run_script("webapp_browser", "--synthetic", "300"), "300")
    sent, decoded = row[2].split(" / ")
    assert row[1] == "after" and is_number(sent) and is_number(decoded) and is_number(row[3]), row


def test_load_benchmark_quick_mode():
    """``hl-debug serve`` before (main's start) and after, under a small concurrent burst."""
    out = run_script("load", "--quick", timeout=600)
    row = figure_row(out, "GET /issues ×8")
    assert len(row) == 9 and row[4] == "0" and row[8] == "0", row  # no errors, before or after
    assert float(row[7]) < 30  # the after p95 is a number
    assert figure_row(out, "POST /api/annotations ×6 (one row)")[8] == "0"
    assert "after: 6 of 6 decisions stored, 6 distinct reviewers recorded" in out


@pytest.mark.slow  # banking77's vectors from the real encoder (cached after the first run)
def test_review_loop_quick(tmp_path):
    if not (ROOT.parent / "shared" / "data" / "banking77" / "train.csv").exists():
        pytest.skip("banking77 not found beside the repository")
    out = run_script("review_loop", "--quick", "--n-boot", "100", "--json", str(tmp_path / "loop.json"))
    cell = "uniform 5% (0)"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith(f"| {cell} |")]
    arms = {(r[1], r[2]) for r in rows}
    assert {("30", "**flagged**"), ("100", "random"), ("100", "flagged, unreviewed flags left out"),
            ("100", "flagged, unreviewed flags relabelled"), ("all", "oracle"),
            ("all", "oracle, flagged errors only")} <= arms, arms
    for r in rows[1:]:
        assert re.fullmatch(r"0\.\d{4}", r[3]) and re.match(r"[-+]\d+\.\d\d \([-+]\d", r[4]), r
    for k in ("0", "30", "100"):  # errors remaining: the truth, then each estimate with its relative error
        row = next([c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
                   if line.startswith(f"| uniform 5% | 0 | {k} |"))
        assert re.fullmatch(r"\d+", row[4]) and all(re.match(r"\d+ \([-+]\d+%\)", c) for c in row[5:8]), row
    import json

    runs = json.loads((tmp_path / "loop.json").read_text())[0]
    flagged = runs[0]["by_k"][-1]
    assert flagged["found"] > 50  # the top of the flagged list is mostly real errors
    start = runs[0]["by_k"][0]["estimates"]  # before any decision both estimates are the detector's count
    assert start["spread_total"] == pytest.approx(start["shipped"], rel=1e-6)
    again = run_script("review_loop", "--from-json", str(tmp_path / "loop.json"), "--n-boot", "100")
    assert [line for line in again.splitlines() if line.startswith(f"| {cell} |")] == [
        line for line in out.splitlines() if line.startswith(f"| {cell} |")]  # the tables come from the JSON alone


@pytest.mark.slow  # banking77's cached vectors
def test_scale_benchmark_quick_mode(tmp_path):
    import json

    if not (ROOT.parent / "shared" / "data" / "banking77" / "train.csv").exists():
        pytest.skip("banking77 not found beside the repository")
    run_script("scale", "--quick", "--json", str(tmp_path / "scale.json"), timeout=600)
    out = json.loads((tmp_path / "scale.json").read_text())
    assert out["rows"] == 3000 and out["sample_size"] == 1500
    assert 0.98 <= out["recall@10"] <= 1 and -1 <= out["ari"] <= 1 and 0 <= out["top50_overlap"] <= 50
    assert out["clusters_exact"] > 0 and out["clusters_approx"] > 0


def test_context_memory_measures_both_versions_in_fresh_processes(store, write_export):
    from tests.test_signals import fill_signal_store

    fill_signal_store(store, write_export)
    out = run_script("context_memory", "--db", str(store.path), "--legacy", "HEAD")
    for version in ("before (HEAD)", "after"):
        row = figure_row(out, version)
        assert row[1] == f"{store.stats()['n_utterances']:,}" and all(is_number(c) for c in row[2:]), row


def test_fold_threads_quick():
    out = run_script("fold_threads", "--quick")  # exits 1 when the two engines' tables differ
    before, threads = figure_row(out, "one by one"), figure_row(out, "threads")
    assert before[2] == "1" and int(threads[2]) == min(5, os.cpu_count() or 1)
    assert all(is_number(c) for c in before[3:5] + threads[3:5]), (before, threads)
    assert before[5] == threads[5] == "same"
