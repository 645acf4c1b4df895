"""`tfxline lineage` as installed on a real pipeline run, checked against ML Metadata read here with
ml_metadata's own API (events and executions, not metadata/lineage.py), the config the run was given and the
serving directory's release history."""
import hashlib
import json
import subprocess

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tests.conftest import write_config
from tests.helpers import TFXLINE, pushed_versions

pytestmark = pytest.mark.e2e
EVENT = metadata_store_pb2.Event
OUTPUTS, INPUTS = (EVENT.OUTPUT, EVENT.DECLARED_OUTPUT), (EVENT.INPUT, EVENT.DECLARED_INPUT)


class _Mlmd:
    def __init__(self, path):
        connection = metadata_store_pb2.ConnectionConfig()
        connection.sqlite.filename_uri = path
        connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        self.store = metadata_store.MetadataStore(connection)

    def producer(self, artifact_id):
        return next(e.execution_id for e in self.store.get_events_by_artifact_ids([artifact_id]) if e.type in OUTPUTS)

    def consumers(self, artifact_id, key):
        return sorted(e.execution_id for e in self.store.get_events_by_artifact_ids([artifact_id])
                      if e.type in INPUTS and e.path.steps[0].key == key)

    def artifact(self, execution_id, key, types):
        ids = [e.artifact_id for e in self.store.get_events_by_execution_ids([execution_id])
               if e.type in types and e.path.steps[0].key == key]
        return self.store.get_artifacts_by_id(ids)[-1] if ids else None

    def written(self, readers, key):
        """The newest `key` output of the given executions."""
        found = [a for a in (self.artifact(r, key, OUTPUTS) for r in readers) if a is not None]
        return max(found, key=lambda a: a.id)


def test_the_chain_of_the_pushed_version_matches_ml_metadata(taxi_run, tmp_path):
    config = taxi_run.config
    version = pushed_versions(config)[-1]
    config_path = write_config(tmp_path, data={"path": config.data.path}, output={"root": config.output.root})
    result = subprocess.run([TFXLINE, "lineage", version, "--config", str(config_path), "--json",
                             str(tmp_path / "lineage.json")], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    found = json.loads((tmp_path / "lineage.json").read_text())
    chain = {link["step"]: link for link in found["chain"]}
    assert list(chain) == ["span", "statistics", "schema", "anomalies", "gate", "drift", "transform", "model",
                           "evaluation", "blessing", "push", "tflite"]
    for step, link in chain.items():
        assert f"  {step:<11} {link['type']} #{link['artifact_id']} by {link['producer']}" in result.stdout

    mlmd = _Mlmd(f"{config.output.root}/metadata.sqlite")
    pushed = max((a for a in mlmd.store.get_artifacts_by_type("PushedModel")
                  if a.custom_properties["pushed_version"].string_value == version), key=lambda a: a.id)
    assert chain["push"]["artifact_id"] == pushed.id
    pusher = mlmd.producer(pushed.id)
    model = mlmd.artifact(pusher, "model", INPUTS)
    blessing = mlmd.artifact(pusher, "model_blessing", INPUTS)
    assert (chain["model"]["artifact_id"], chain["blessing"]["artifact_id"]) == (model.id, blessing.id)
    assert chain["blessing"]["blessed"] == blessing.custom_properties["blessed"].int_value == 1
    trainer = mlmd.store.get_executions_by_id([mlmd.producer(model.id)])[0]
    examples = mlmd.artifact(trainer.id, "examples", INPUTS)
    assert chain["span"]["artifact_id"] == examples.id
    assert chain["schema"]["artifact_id"] == mlmd.artifact(trainer.id, "schema", INPUTS).id
    assert chain["transform"]["artifact_id"] == mlmd.artifact(trainer.id, "transform_graph", INPUTS).id
    settings = json.loads(trainer.custom_properties["custom_config"].string_value)
    assert chain["model"]["code_version"] == settings["code_version"]
    # The config fingerprint is that of the config this test gave the run, as the Trainer received it.
    given = json.dumps(json.loads(json.dumps(config.to_custom_config())), sort_keys=True)
    assert chain["model"]["config_fingerprint"] == hashlib.sha256(given.encode()).hexdigest()[:16]
    example_gen = mlmd.store.get_executions_by_id([mlmd.producer(examples.id)])[0]
    assert chain["span"]["span"] == examples.custom_properties["span"].int_value == 0
    assert chain["span"]["input_fingerprint"] == example_gen.custom_properties["input_fingerprint"].string_value
    assert chain["span"]["input_base"] == example_gen.custom_properties["input_base"].string_value == config.data.path
    statistics = mlmd.written(mlmd.consumers(examples.id, "examples"), "statistics")
    assert chain["statistics"]["artifact_id"] == statistics.id
    anomalies = mlmd.written(mlmd.consumers(statistics.id, "statistics"), "anomalies")
    assert chain["anomalies"]["artifact_id"] == anomalies.id
    assert chain["gate"]["artifact_id"] == mlmd.written(mlmd.consumers(anomalies.id, "anomalies"), "report").id
    profile = mlmd.written(mlmd.consumers(examples.id, "examples"), "profile")
    drift = mlmd.written(mlmd.consumers(profile.id, "profile"), "report")
    assert chain["drift"]["artifact_id"] == drift.id
    assert chain["drift"]["drifted"] == drift.custom_properties["drifted"].int_value
    assert chain["evaluation"]["artifact_id"] == mlmd.written(mlmd.consumers(model.id, "model"), "evaluation").id
    edge = mlmd.written(mlmd.consumers(pushed.id, "pushed_model"), "edge_model")
    assert chain["tflite"]["artifact_id"] == edge.id and edge.custom_properties["edge_version"].string_value == version
    history = json.loads((taxi_run.root / "out" / "serving" / "release_history.json").read_text())["taxi"]["events"]
    assert found["releases"] == [e for e in history if e["version"] == int(version)
                                 or int(version) in e["labels"].values()] and found["releases"]


def test_an_unknown_version_is_one_line(taxi_run, tmp_path):
    config_path = write_config(tmp_path, data={"path": taxi_run.config.data.path},
                               output={"root": taxi_run.config.output.root})
    result = subprocess.run([TFXLINE, "lineage", "123", "--config", str(config_path)], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == ("tfxline lineage: ML Metadata has no push of version 123 by pipeline 'taxi'; "
                                     "`tfxline release status` lists the versions on disk")
