"""Integration: the real shared export."""

from __future__ import annotations

import json

from click.testing import CliRunner

from hl_debug.cli import cli


def test_ingest_real_export(db_path, real_export):
    runner = CliRunner()
    r = runner.invoke(cli, ["--db", str(db_path), "ingest", str(real_export)], obj={})
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["--db", str(db_path), "stats", "--format", "json"], obj={})
    s = json.loads(r.output)
    assert s["n_utterances"] == 2327 and s["n_annotated"] == 2134 and s["n_unannotated"] == 193
    assert len(s["by_intent"]) == 12
    assert s["by_usage"] == {"testing": 213, "training": 1708, "validation": 213, "none": 193}
    r = runner.invoke(cli, ["--db", str(db_path), "ingest", str(real_export)], obj={})
    assert "0 added, 0 changed, 2327 unchanged" in r.output
