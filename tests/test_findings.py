"""pipelines/findings.py: generated sections between markers, hand-written text kept."""

from __future__ import annotations

import pytest
from sklearn.decomposition import PCA

from hl_debug.steps.analyze import MapAnalyzer, analyze
from hl_debug.steps.embed import embed
from hl_debug.steps.ingest import ingest
from pipelines import findings
from tests.fakes import FakeEncoder
from tests.test_analyze import synthetic_records


def test_update_document_replaces_only_between_markers():
    doc = ("# Findings\n\nIntro by hand.\n\n<!-- BEGIN GENERATED:a -->\nold table\n<!-- END GENERATED:a -->\n\n"
           "Reading of a, by hand.\n")
    new = findings.update_document(doc, {"a": ("A", "new table"), "b": ("Section B", "b table")})
    assert "Intro by hand." in new and "Reading of a, by hand." in new
    assert "old table" not in new and "<!-- BEGIN GENERATED:a -->\nnew table\n<!-- END GENERATED:a -->" in new
    # a section without markers is appended with a heading
    assert new.endswith("## Section B\n\n<!-- BEGIN GENERATED:b -->\nb table\n<!-- END GENERATED:b -->\n")
    # idempotent
    assert findings.update_document(new, {"a": ("A", "new table"), "b": ("Section B", "b table")}) == new


def test_update_document_rejects_unbalanced_markers():
    with pytest.raises(ValueError, match="section 'a'.*1 BEGIN and 0 END"):
        findings.update_document("<!-- BEGIN GENERATED:a -->\n", {"a": ("A", "x")})


def test_sections_are_a_list_others_can_extend(monkeypatch):
    monkeypatch.setattr(findings, "SECTIONS", list(findings.SECTIONS))
    names = [s.name for s in findings.SECTIONS]
    assert names[:3] == ["map_summary", "impure_clusters", "unannotated_regions"]

    @findings.section("top_suspected_errors", "Top suspected errors")
    def render(store):
        return "| id |\n|---|"

    assert findings.SECTIONS[-1].name == "top_suspected_errors"
    with pytest.raises(ValueError, match="lower_snake_case"):
        findings.section("Bad Name", "x")


def test_render_and_main_on_an_analysed_store(store, db_path, write_export, tmp_path):
    ingest(store, write_export(synthetic_records()))
    embed(store, FakeEncoder(), progress=False)
    analyze(store, MapAnalyzer(map_model=PCA(2), reduce_model=PCA(5)), progress=False)
    rendered = findings.render_all(store)
    impure = rendered["impure_clusters"][1]
    assert impure.startswith("| rank | cluster | keywords |") and "#5003 bill_question" in impure
    assert "likely error" in impure  # the suspects' likely errors are counted per cluster
    assert "travel" in rendered["unannotated_regions"][1]
    assert "72 utterances" in rendered["map_summary"][1]
    doc = tmp_path / "FINDINGS.md"
    doc.write_text("# Findings\n\nhand-written\n")
    assert findings.main(["--db", str(db_path), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "hand-written" in text and "<!-- END GENERATED:unannotated_regions -->" in text
    assert findings.main(["--db", str(db_path), "--doc", str(doc), "--check"]) == 0
    doc.write_text(text.replace("| 1 |", "| 9 |", 1))
    assert findings.main(["--db", str(db_path), "--doc", str(doc), "--check"]) == 1


def test_render_without_analysis_names_the_step(tiny_store):
    from hl_debug.errors import MissingStepError

    with pytest.raises(MissingStepError, match="no analysis"):
        findings.render_impure_clusters(tiny_store)
