"""The notebooks run top to bottom (nbclient) against a database built by the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeEncoder

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def pipeline_db(tmp_path, tiny_export_path) -> Path:
    """The tiny export through `run_pipeline` (fake encoder, short UMAP) into a fresh database."""
    from hl_debug.storage import Store
    from pipelines.full import run_pipeline

    path = tmp_path / "nb.db"
    store = Store(path)
    try:
        summaries = run_pipeline(store, tiny_export_path, encoder=FakeEncoder(), n_epochs=30, progress=False,
                                 model_dir=str(tmp_path / "model"))
    finally:
        store.close()
    assert "analyze" in [s["step"] for s in summaries]
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["explore_map.ipynb"])
def test_notebook_runs_top_to_bottom(name, pipeline_db, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("HL_DB", str(pipeline_db))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "24 utterances" in text and str(pipeline_db) in text
