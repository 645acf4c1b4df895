"""What a pipeline's runs recorded in ML Metadata: executions per component, their state (new or
cached), times and output artifacts."""
import dataclasses
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

_STATE = metadata_store_pb2.Execution.State
# Resolver nodes record what they resolved as INTERNAL_OUTPUT.
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT,
                  metadata_store_pb2.Event.INTERNAL_OUTPUT)


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    execution: metadata_store_pb2.Execution
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]

    @property
    def cached(self) -> bool:
        return self.execution.last_known_state == _STATE.CACHED

    @property
    def seconds(self) -> float:
        return (self.execution.last_update_time_since_epoch - self.execution.create_time_since_epoch) / 1000

    def output(self, key: str) -> Optional[metadata_store_pb2.Artifact]:
        artifacts = self.outputs.get(key) or []
        return artifacts[-1] if artifacts else None


def _node_id(store, execution_id: int, pipeline_name: str) -> Optional[str]:
    prefix = pipeline_name + "."
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "node" and context.name.startswith(prefix):
            return context.name[len(prefix):]
    return None


def _outputs(store, execution_id: int) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type in _OUTPUT_EVENTS]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs


def executions_by_component(store, pipeline_name: str) -> Dict[str, List[metadata_store_pb2.Execution]]:
    """Every execution recorded for each component of the pipeline, oldest first."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return {}
    result: Dict[str, List[metadata_store_pb2.Execution]] = {}
    for execution in sorted(store.get_executions_by_context(pipeline.id), key=lambda e: e.id):
        result.setdefault(_node_id(store, execution.id, pipeline_name), []).append(execution)
    return result


def latest_run(store, pipeline_name: str) -> Dict[str, ComponentRun]:
    """The executions of the pipeline's most recent run, by component id."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    executions = store.get_executions_by_context(pipeline.id) if pipeline else []
    if not executions:
        return {}
    newest = max(executions, key=lambda e: e.id)
    run = next(c for c in store.get_contexts_by_execution(newest.id) if c.type == "pipeline_run")
    return {
        _node_id(store, e.id, pipeline_name): ComponentRun(_node_id(store, e.id, pipeline_name), e,
                                                           _outputs(store, e.id))
        for e in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    }
