"""Lineage in ML Metadata: which execution made an artifact, what an execution read and wrote, who read an
artifact; and the paths built from them that commands follow (a served model version back to the data it
was trained on, and forward to that data's statistics)."""
from typing import List, Optional

from ml_metadata.proto import metadata_store_pb2

_EVENT = metadata_store_pb2.Event
_INPUTS = (_EVENT.INPUT, _EVENT.DECLARED_INPUT)
_OUTPUTS = (_EVENT.OUTPUT, _EVENT.DECLARED_OUTPUT)


def _key(event) -> str:
    return event.path.steps[0].key if event.path.steps else ""


def artifact_type(store, artifact) -> str:
    return store.get_artifact_types_by_id([artifact.type_id])[0].name


def artifacts_of_type(store, pipeline_name: str, type_name: str) -> List[metadata_store_pb2.Artifact]:
    """The pipeline's artifacts of one type, oldest first."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return []
    type_ids = {t.id for t in store.get_artifact_types() if t.name == type_name}
    return sorted((a for a in store.get_artifacts_by_context(pipeline.id) if a.type_id in type_ids),
                  key=lambda a: a.id)


def producer(store, artifact_id: int) -> Optional[metadata_store_pb2.Execution]:
    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in _OUTPUTS]
    if not events:
        return None
    return store.get_executions_by_id([events[0].execution_id])[0]


def consumers(store, artifact_id: int) -> List[metadata_store_pb2.Execution]:
    ids = sorted({e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in _INPUTS})
    return store.get_executions_by_id(ids) if ids else []


def _artifacts(store, execution_id: int, types, key: Optional[str]) -> List[metadata_store_pb2.Artifact]:
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type in types and (key is None or _key(e) == key)]
    return store.get_artifacts_by_id([e.artifact_id for e in events]) if events else []


def inputs(store, execution_id: int, key: Optional[str] = None) -> List[metadata_store_pb2.Artifact]:
    return _artifacts(store, execution_id, _INPUTS, key)


def outputs(store, execution_id: int, key: Optional[str] = None) -> List[metadata_store_pb2.Artifact]:
    return _artifacts(store, execution_id, _OUTPUTS, key)


def downstream(store, artifact_id: int, type_name: str) -> List[metadata_store_pb2.Artifact]:
    """Artifacts of `type_name` written by the executions that read the artifact, newest last."""
    found = []
    for execution in consumers(store, artifact_id):
        found.extend(a for a in outputs(store, execution.id) if artifact_type(store, a) == type_name)
    return sorted(found, key=lambda a: a.id)


def pushed_model(store, pipeline_name: str, version: str) -> Optional[metadata_store_pb2.Artifact]:
    """The PushedModel artifact that published `version` (TF Serving's version directory name)."""
    for artifact in reversed(artifacts_of_type(store, pipeline_name, "PushedModel")):
        properties = artifact.custom_properties
        if properties.get("pushed") and properties["pushed"].int_value == 1 and \
                properties.get("pushed_version") and properties["pushed_version"].string_value == str(version):
            return artifact
    return None


def training_examples(store, pipeline_name: str, version: str) -> Optional[metadata_store_pb2.Artifact]:
    """The Examples a served version was trained on: its PushedModel, the Pusher that wrote it, the Model
    the Pusher read, the Trainer that wrote that, and the Trainer's `examples` input."""
    pushed = pushed_model(store, pipeline_name, version)
    pusher = producer(store, pushed.id) if pushed else None
    models = inputs(store, pusher.id, "model") if pusher else []
    trainer = producer(store, models[0].id) if models else None
    examples = inputs(store, trainer.id, "examples") if trainer else []
    return examples[0] if examples else None
