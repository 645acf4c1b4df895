"""The reviewers' notebook runs top to bottom against a real pipeline run."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline import summary

pytestmark = pytest.mark.e2e
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "model_review.ipynb"


def test_slice_metrics_cover_every_configured_slice(taxi_run):
    rows = summary.slice_metrics(taxi_run.config)
    assert rows[0]["slice"] == "(all eval rows)"
    assert rows[0]["auc"] == pytest.approx(summary.collect(taxi_run.config)["metrics"]["auc"]["candidate"])
    assert any(row["slice"].startswith("trip_start_hour=") for row in rows)
    assert any(row["slice"].startswith("payment_type=") for row in rows)


def test_model_review_notebook_executes(taxi_run, monkeypatch):
    monkeypatch.setenv("TFXLINE_CONFIG", str(taxi_run.root / "config.yaml"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(taxi_run.root)}}).execute()
    summary_text = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert "Summary of 'taxi'" in summary_text and "blessed     yes" in summary_text
    table = notebook.cells[3].outputs[0]["data"]["text/plain"]
    assert "(all eval rows)" in table and "trip_start_hour=" in table
