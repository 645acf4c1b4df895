"""Reading what a test pipeline run produced."""
import glob
import os

import tensorflow as tf

from pipeline import local, mlmd


def store_for(config):
    return mlmd.open_store(local.metadata_connection_config(config))


def latest_artifact_uri(config, component: str, output: str) -> str:
    run = mlmd.latest_run(store_for(config), config.name)
    return run[component].output(output).uri


def eval_examples(config, limit: int = 200) -> list:
    """Serialized tf.Examples of the run's eval split."""
    uri = latest_artifact_uri(config, "CsvExampleGen", "examples")
    files = sorted(glob.glob(os.path.join(uri, "Split-eval", "*")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [record.numpy() for record in dataset]


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
