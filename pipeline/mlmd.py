"""Reading what a pipeline run recorded in ML Metadata: executions per component, their
state (new or cached), times and output artifacts."""
import dataclasses
from typing import Dict, List

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATE = metadata_store_pb2.Execution.State


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    execution: metadata_store_pb2.Execution
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]

    @property
    def cached(self) -> bool:
        return self.execution.last_known_state == _STATE.CACHED

    @property
    def succeeded(self) -> bool:
        return self.execution.last_known_state in (_STATE.COMPLETE, _STATE.CACHED)

    @property
    def seconds(self) -> float:
        return (self.execution.last_update_time_since_epoch - self.execution.create_time_since_epoch) / 1000


def open_store(connection_config) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(connection_config)


def _output_artifacts(store, execution_id: int) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs


def latest_run(store, pipeline_name: str) -> Dict[str, ComponentRun]:
    """The newest execution of each component in the pipeline's most recent run."""
    runs = store.get_contexts_by_type("pipeline_run")
    runs = [c for c in runs if c.name.startswith("") and _belongs(store, c, pipeline_name)]
    if not runs:
        return {}
    run = max(runs, key=lambda c: c.create_time_since_epoch)
    result = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node_id = execution.properties["component_id"].string_value or execution.custom_properties[
            "component_id"].string_value
        result[node_id] = ComponentRun(node_id, execution, _output_artifacts(store, execution.id))
    return result


def _belongs(store, run_context, pipeline_name: str) -> bool:
    parents = store.get_parent_contexts_by_context(run_context.id)
    return any(p.name == pipeline_name for p in parents)


def executions_by_component(store, pipeline_name: str) -> Dict[str, List[metadata_store_pb2.Execution]]:
    """Every execution ever recorded for each component of the pipeline, oldest first."""
    pipeline_context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_context is None:
        return {}
    result: Dict[str, List[metadata_store_pb2.Execution]] = {}
    for execution in sorted(store.get_executions_by_context(pipeline_context.id), key=lambda e: e.id):
        node_id = execution.custom_properties["component_id"].string_value or execution.properties[
            "component_id"].string_value
        result.setdefault(node_id, []).append(execution)
    return result
