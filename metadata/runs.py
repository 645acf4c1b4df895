"""What a pipeline's runs recorded in ML Metadata: executions per component, their state (new or
cached), times, input and output artifacts.

A run is a `pipeline_run` context; its id is the context's name (for a local run, the time it
started, e.g. 2026-12-03T14:32:28.557516; on Kubeflow, the run's id)."""
import dataclasses
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

_STATE = metadata_store_pb2.Execution.State
# Resolver nodes record what they resolved as INTERNAL_OUTPUT.
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT,
                  metadata_store_pb2.Event.INTERNAL_OUTPUT)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT,
                 metadata_store_pb2.Event.INTERNAL_INPUT)


class UnknownRun(LookupError):
    """No run of the pipeline has the id asked for."""


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    execution: metadata_store_pb2.Execution
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]
    inputs: Dict[str, List[metadata_store_pb2.Artifact]] = dataclasses.field(default_factory=dict)
    # Ids of output artifacts that a resolver found rather than the component wrote.
    resolved: frozenset = frozenset()

    @property
    def cached(self) -> bool:
        return self.execution.last_known_state == _STATE.CACHED

    @property
    def state(self) -> str:
        """NEW, RUNNING, COMPLETE, FAILED, CACHED or CANCELED."""
        return _STATE.Name(self.execution.last_known_state)

    @property
    def succeeded(self) -> bool:
        return self.execution.last_known_state in (_STATE.COMPLETE, _STATE.CACHED)

    @property
    def seconds(self) -> float:
        return (self.execution.last_update_time_since_epoch - self.execution.create_time_since_epoch) / 1000

    def output(self, key: str) -> Optional[metadata_store_pb2.Artifact]:
        artifacts = self.outputs.get(key) or []
        return artifacts[-1] if artifacts else None

    def input(self, key: str) -> Optional[metadata_store_pb2.Artifact]:
        artifacts = self.inputs.get(key) or []
        return artifacts[-1] if artifacts else None


@dataclasses.dataclass(frozen=True)
class RunInfo:
    run_id: str
    started_ms: int
    components: int


def _node_id(store, execution_id: int, pipeline_name: str) -> Optional[str]:
    prefix = pipeline_name + "."
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "node" and context.name.startswith(prefix):
            return context.name[len(prefix):]
    return None


def _artifacts_by_key(store, execution_id: int, kinds) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in kinds]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    found: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        # An artifact given to one execution under two keys (a model that is also its own baseline) is
        # one event whose path lists both.
        keys = [step.key for step in event.path.steps if step.WhichOneof("value") == "key"] or [""]
        for key in keys:
            found.setdefault(key, []).append(artifacts[event.artifact_id])
    return found


def component_run(store, execution: metadata_store_pb2.Execution, pipeline_name: str) -> ComponentRun:
    resolved = frozenset(e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                         if e.type == metadata_store_pb2.Event.INTERNAL_OUTPUT)
    return ComponentRun(_node_id(store, execution.id, pipeline_name), execution,
                        _artifacts_by_key(store, execution.id, _OUTPUT_EVENTS),
                        _artifacts_by_key(store, execution.id, _INPUT_EVENTS), resolved)


def executions_by_component(store, pipeline_name: str) -> Dict[str, List[metadata_store_pb2.Execution]]:
    """Every execution recorded for each component of the pipeline, oldest first."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return {}
    result: Dict[str, List[metadata_store_pb2.Execution]] = {}
    for execution in sorted(store.get_executions_by_context(pipeline.id), key=lambda e: e.id):
        result.setdefault(_node_id(store, execution.id, pipeline_name), []).append(execution)
    return result


def _run_contexts(store, pipeline_name: str) -> List[metadata_store_pb2.Context]:
    """The pipeline's run contexts, oldest first."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return []
    seen: Dict[int, metadata_store_pb2.Context] = {}
    for execution in sorted(store.get_executions_by_context(pipeline.id), key=lambda e: e.id):
        for context in store.get_contexts_by_execution(execution.id):
            if context.type == "pipeline_run":
                seen.setdefault(context.id, context)
    return list(seen.values())


def list_runs(store, pipeline_name: str) -> List[RunInfo]:
    """The pipeline's runs, oldest first."""
    return [RunInfo(context.name, context.create_time_since_epoch, len(store.get_executions_by_context(context.id)))
            for context in _run_contexts(store, pipeline_name)]


def run(store, pipeline_name: str, run_id: Optional[str] = None) -> Dict[str, ComponentRun]:
    """The executions of one run (the latest without `run_id`), by component id; {} without runs.
    A unique prefix of an id picks that run; an unknown id raises UnknownRun."""
    contexts = _run_contexts(store, pipeline_name)
    if not contexts:
        if run_id:
            raise UnknownRun(f"pipeline '{pipeline_name}' has no runs in ML Metadata")
        return {}
    if run_id is None:
        context = contexts[-1]
    else:
        matches = [c for c in contexts if c.name == run_id] or [c for c in contexts if c.name.startswith(run_id)]
        if len(matches) != 1:
            known = ", ".join(c.name for c in contexts[-5:])
            problem = "matches several runs of" if matches else "is not a run of"
            raise UnknownRun(f"'{run_id}' {problem} pipeline '{pipeline_name}' (latest runs: {known})")
        context = matches[0]
    return {
        component.node_id: component
        for component in (component_run(store, e, pipeline_name)
                          for e in sorted(store.get_executions_by_context(context.id), key=lambda e: e.id))
    }


def run_id_of(store, component: ComponentRun) -> Optional[str]:
    for context in store.get_contexts_by_execution(component.execution.id):
        if context.type == "pipeline_run":
            return context.name
    return None


def latest_run(store, pipeline_name: str) -> Dict[str, ComponentRun]:
    """The executions of the pipeline's most recent run, by component id."""
    return run(store, pipeline_name)
