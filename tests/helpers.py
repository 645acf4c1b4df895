"""Reading what a test pipeline run produced."""
import glob
import os
import sys
from pathlib import Path

import tensorflow as tf

from metadata import runs, store

# The installed console script of the environment the tests run in: user paths are tested as users run them.
TFXLINE = str(Path(sys.executable).with_name("tfxline"))


def store_for(config):
    return store.open_store(config)


def latest_artifact_uri(config, component: str, output: str) -> str:
    run = runs.latest_run(store_for(config), config.name)
    return run[component].output(output).uri


def split_examples(examples_uri: str, split: str = "eval", limit: int = 200) -> list:
    """Serialized tf.Examples of one split of an Examples artifact."""
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [record.numpy() for record in dataset]


def eval_examples(config, limit: int = 200) -> list:
    """Serialized tf.Examples of the latest run's eval split."""
    return split_examples(latest_artifact_uri(config, "CsvExampleGen", "examples"), "eval", limit)


def example_rows(serialized, names) -> list:
    """tf.Examples as the inspection software sends them: raw features by name, with missing
    values left out and features the model does not take dropped."""
    rows = []
    for record in serialized:
        row = {}
        for name, feature in tf.train.Example.FromString(record).features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            if values and name in names:
                row[name] = values[0].decode() if isinstance(values[0], bytes) else values[0]
        rows.append(row)
    return rows


def pushed_versions(config) -> list:
    base = os.path.join(config.output.serving, config.name)
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def progress_fields(line: str) -> list:
    """'[ 6/10] AnomalyGate   done   0.1 s' -> ['AnomalyGate', 'done', '0.1', 's']"""
    return line.split("]", 1)[1].split()


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# What a notebook may output: plain HTML, text and images, never widgets.
PLAIN_OUTPUTS = {"text/html", "text/plain", "image/png", "image/svg+xml"}


def execute_notebook(name: str, config_path, cwd, run_id=None):
    """Runs notebooks/<name>.ipynb top to bottom in a fresh kernel, as a reviewer would after `tfxline run`
    (the config from TFXLINE_CONFIG); raises on any cell error. Returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    saved = {key: os.environ.get(key) for key in ("TFXLINE_CONFIG", "TFXLINE_RUN")}
    os.environ["TFXLINE_CONFIG"] = str(config_path)
    if run_id:
        os.environ["TFXLINE_RUN"] = run_id
    else:
        os.environ.pop("TFXLINE_RUN", None)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


def notebook_outputs(notebook):
    """(kind, text) of every output: ("stream", text) or (mime type, content)."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                found.append((f"stream:{output['name']}", output["text"]))
            elif output["output_type"] == "error":
                found.append(("error", output["ename"]))
            else:
                found.extend(output.get("data", {}).items())
    return found


def rows_per_split(statistics_uri: str) -> dict:
    """Examples per split, from a StatisticsGen output."""
    import tensorflow_data_validation as tfdv

    return {split: tfdv.load_stats_binary(os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb"))
            .datasets[0].num_examples for split in ("train", "eval")}


def overall_auc(evaluation_uri: str, model_name=None) -> float:
    """The whole eval split's AUC in an Evaluator output (model_name "candidate" or "baseline" when
    the Evaluator compared two models)."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri, model_name=model_name)
    for slice_key, metrics in result.slicing_metrics:
        if slice_key == ():
            return next(iter(next(iter(metrics.values())).values()))["auc"]["doubleValue"]
    raise AssertionError(f"no overall slice in {evaluation_uri}")
