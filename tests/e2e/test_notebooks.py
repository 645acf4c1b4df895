"""The reviewers' notebooks run top to bottom against a real pipeline run, with plain HTML outputs."""
import nbformat
import pytest

from tests.helpers import NOTEBOOKS, PLAIN_OUTPUTS, execute_notebook, notebook_outputs

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", ["model_review", "data_review"])
def test_notebooks_are_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert any("from review import notebook" in cell.source for cell in code)  # the report's own module


def html_of(notebook) -> str:
    return "".join(content for kind, content in notebook_outputs(notebook) if kind == "text/html")


def test_model_review_notebook_executes(taxi_run):
    notebook = execute_notebook("model_review", taxi_run.root / "config.yaml", taxi_run.root)
    outputs = notebook_outputs(notebook)
    assert {kind for kind, _ in outputs} <= PLAIN_OUTPUTS | {"stream:stdout"}
    printed = "".join(text for kind, text in outputs if kind == "stream:stdout")
    assert printed.startswith("Run ") and "of pipeline 'taxi'" in printed
    page = html_of(notebook)
    for section in ("summary", "slices", "plots", "fairness", "lineage", "model-card"):
        assert f'<section id="{section}">' in page
    assert "trip_start_hour=" in page and "<svg" in page and "<script" not in page


def test_data_review_notebook_executes(taxi_run):
    notebook = execute_notebook("data_review", taxi_run.root / "config.yaml", taxi_run.root)
    outputs = notebook_outputs(notebook)
    assert {kind for kind, _ in outputs} <= PLAIN_OUTPUTS | {"stream:stdout"}
    page = html_of(notebook)
    assert "Statistics: train" in page and "Statistics: eval" in page and "<h3>Schema</h3>" in page
    assert "Drift and skew" in page and "payment_type" in page


def test_a_relative_output_root_is_found_from_the_notebooks_directory(taxi_run, tmp_path):
    """As after `make run` at the repository's root: the run wrote ./<root>, and Jupyter starts the
    kernel in notebooks/."""
    from tests.conftest import write_config

    config = write_config(tmp_path, data={"path": str(taxi_run.config.data.path)}, output={"root": "out"})
    kernel_dir = taxi_run.root / "notebooks"
    kernel_dir.mkdir(exist_ok=True)
    notebook = execute_notebook("data_review", config, kernel_dir)
    printed = "".join(text for kind, text in notebook_outputs(notebook) if kind == "stream:stdout")
    assert printed.startswith("Run ") and "Statistics: eval" in html_of(notebook)
