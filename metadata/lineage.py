"""Lineage from ML Metadata: which artifacts a run read and wrote, and how they connect, along the
chain span -> statistics -> schema -> anomalies -> gate -> profile -> drift -> transform -> model ->
evaluation -> blessing -> push -> TFLite -> drift baseline. The one place that walks the chain: the
review draws it, and a command that traces a pushed model back to its data reads it too (`upstream`).

Edges come from MLMD's events only (an execution's input artifact -> its output artifact), so a cached
execution links the artifacts an earlier run wrote. A component that only orders another (the
AnomalyGate before Transform) has no artifact edge; `ordering` records it when both ran.

The single-step queries at the end (producer, inputs, outputs, downstream) are the paths commands
follow: a served model version back to the examples it was trained on, and forward to their profile."""
import dataclasses
import hashlib
import json
from typing import Dict, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from metadata import runs

# (step, MLMD artifact type) in chain order.
CHAIN: Tuple[Tuple[str, str], ...] = (
    ("span", "Examples"),
    ("statistics", "ExampleStatistics"),
    ("schema", "Schema"),
    ("anomalies", "ExampleAnomalies"),
    ("gate", "tfxline.AnomalyReport"),
    ("profile", "tfxline.DataProfile"),
    ("drift", "tfxline.DriftReport"),
    ("transform", "TransformGraph"),
    ("model", "Model"),
    ("evaluation", "ModelEvaluation"),
    ("blessing", "ModelBlessing"),
    ("push", "PushedModel"),
    ("tflite", "tfxline.EdgeModel"),
    ("drift_baseline", "tfxline.DriftBaseline"),
)
STEP_OF_TYPE = {artifact_type: step for step, artifact_type in CHAIN}
# Custom properties worth showing beside an artifact.
SHOWN_PROPERTIES = ("span", "version", "blessed", "pushed", "pushed_version", "exported", "edge_version",
                    "passed", "anomalies")
# Inputs that hold what a candidate is compared with: the Evaluator's and the DriftGate's.
BASELINE_INPUTS = ("baseline_model", "baseline")
# Components that gate others without passing them an artifact: (gate, gated).
ORDERING = (("AnomalyGate", "Transform"), ("DriftGate", "Transform"))


@dataclasses.dataclass(frozen=True)
class Node:
    artifact_id: int
    step: str          # the chain step, or the artifact type for artifacts off the chain (ModelRun)
    artifact_type: str
    uri: str
    producer: Optional[str]   # component id that wrote it (None for an artifact from outside the run)
    properties: Dict[str, object]
    role: str = ""     # "baseline" for the model the Evaluator and the profile the DriftGate compared against


@dataclasses.dataclass(frozen=True)
class Edge:
    source: int   # artifact id
    target: int   # artifact id
    component: str


@dataclasses.dataclass
class Lineage:
    run_id: Optional[str]
    nodes: List[Node]
    edges: List[Edge]
    # component id -> state (COMPLETE, CACHED, FAILED, ...)
    components: Dict[str, str]
    ordering: List[Tuple[str, str]]

    def chain(self) -> List[Node]:
        """The nodes on the chain, in chain order (a baseline model after the candidate)."""
        order = {step: index for index, (step, _) in enumerate(CHAIN)}
        on_chain = [n for n in self.nodes if n.step in order]
        return sorted(on_chain, key=lambda n: (order[n.step], n.role != "", n.artifact_id))

    def step(self, name: str) -> List[Node]:
        return [n for n in self.chain() if n.step == name]

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "nodes": [dataclasses.asdict(n) for n in self.chain()],
                "edges": [dataclasses.asdict(e) for e in self.edges], "components": self.components,
                "ordering": [list(pair) for pair in self.ordering]}


def _value(value: metadata_store_pb2.Value):
    kind = value.WhichOneof("value")
    if kind == "struct_value":
        return {key: item.number_value if item.HasField("number_value") else item.string_value
                for key, item in value.struct_value.fields.items()}
    if kind == "string_value":
        text = value.string_value
        try:
            return json.loads(text) if text[:1] in "[{" else text
        except ValueError:
            return text
    return getattr(value, kind) if kind else None


def _properties(artifact: metadata_store_pb2.Artifact) -> Dict[str, object]:
    found = {}
    for source in (artifact.properties, artifact.custom_properties):
        for name in SHOWN_PROPERTIES + ("split_names",):
            if name in source:
                found[name] = _value(source[name])
    return found


def _node(artifact: metadata_store_pb2.Artifact, type_names: Dict[int, str], producer: Optional[str],
          role: str = "") -> Node:
    type_name = type_names.get(artifact.type_id, artifact.type)
    return Node(artifact.id, STEP_OF_TYPE.get(type_name, type_name), type_name, artifact.uri, producer,
                _properties(artifact), role)


def _type_names(store) -> Dict[int, str]:
    return {t.id: t.name for t in store.get_artifact_types()}


def from_components(store, components: Dict[str, runs.ComponentRun], run_id: Optional[str] = None) -> Lineage:
    """The lineage of one run's executions (as `runs.run` returns them)."""
    type_names = _type_names(store)
    nodes: Dict[int, Node] = {}
    edges: List[Edge] = []
    for component_id, component in components.items():
        for artifacts in component.outputs.values():
            for artifact in artifacts:
                producer = None if artifact.id in component.resolved else component_id
                if artifact.id not in nodes or nodes[artifact.id].producer is None:
                    nodes[artifact.id] = _node(artifact, type_names, producer)
    baselines, candidates = set(), set()
    for component_id, component in components.items():
        for key, artifacts in component.inputs.items():
            for artifact in artifacts:
                if artifact.id not in nodes:
                    nodes[artifact.id] = _node(artifact, type_names, None)
                if key in BASELINE_INPUTS:
                    baselines.add(artifact.id)
                elif key in ("model", "profile"):
                    candidates.add(artifact.id)
                for outputs in component.outputs.values():
                    edges.extend(Edge(artifact.id, output.id, component_id) for output in outputs
                                 if output.id not in component.resolved)
    # A baseline is what serves (ServingBaseline's copies) or what a resolver found; a model compared
    # with itself is the candidate.
    for artifact_id in baselines - candidates:
        nodes[artifact_id] = dataclasses.replace(nodes[artifact_id], role="baseline")
    ordering = [(gate, gated) for gate, gated in ORDERING
                if gate in components and gated in components and components[gate].succeeded]
    return Lineage(run_id, list(nodes.values()), _unique(edges),
                   {name: component.state for name, component in components.items()}, ordering)


def _unique(edges: List[Edge]) -> List[Edge]:
    return list(dict.fromkeys(edges))


def for_run(store, pipeline_name: str, run_id: Optional[str] = None) -> Lineage:
    """The lineage of a run (the latest without `run_id`); raises runs.UnknownRun."""
    components = runs.run(store, pipeline_name, run_id)
    resolved = runs.run_id_of(store, next(iter(components.values()))) if components else None
    return from_components(store, components, resolved)


def upstream(store, artifact_id: int, pipeline_name: str) -> Lineage:
    """Everything an artifact was made from, across runs: the producing execution of each artifact,
    then its inputs, back to the examples (for tracing a pushed model to its data)."""
    type_names = _type_names(store)
    nodes: Dict[int, Node] = {}
    edges: List[Edge] = []
    components: Dict[str, str] = {}
    pending = [artifact_id]
    while pending:
        current = pending.pop()
        if current in nodes:
            continue
        artifact = store.get_artifacts_by_id([current])[0]
        producers = [e for e in store.get_events_by_artifact_ids([current])
                     if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
        producer = None
        if producers:
            execution = store.get_executions_by_id([producers[0].execution_id])[0]
            component = runs.component_run(store, execution, pipeline_name)
            producer = component.node_id
            components[producer] = component.state
            for artifacts in component.inputs.values():
                for source in artifacts:
                    edges.append(Edge(source.id, current, producer))
                    pending.append(source.id)
        nodes[current] = _node(artifact, type_names, producer)
    return Lineage(None, list(nodes.values()), _unique(edges), components, [])


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


def evaluation(store, pipeline_name: str, version: str) -> Optional[metadata_store_pb2.Artifact]:
    """The ModelEvaluation of a served version as the candidate: the Evaluator that read the Model the version
    was pushed from as its `model` (not as a later run's `baseline_model`)."""
    pushed = pushed_model(store, pipeline_name, version)
    pusher = producer(store, pushed.id) if pushed else None
    models = inputs(store, pusher.id, "model") if pusher else []
    if not models:
        return None
    found = []
    for execution in consumers(store, models[0].id):
        if any(model.id == models[0].id for model in inputs(store, execution.id, "model")):
            found.extend(a for a in outputs(store, execution.id) if artifact_type(store, a) == "ModelEvaluation")
    return sorted(found, key=lambda a: a.id)[-1] if found else None


@dataclasses.dataclass(frozen=True)
class Link:
    """One step of a served version's chain: the artifact, the component that wrote it, what to show."""
    step: str
    artifact_id: int
    artifact_type: str
    uri: str
    producer: Optional[str]
    details: Dict[str, object]


def _custom(artifact_or_execution, name: str):
    properties = artifact_or_execution.custom_properties
    return _value(properties[name]) if name in properties else None


def _newest_downstream(store, artifact, type_name: str):
    found = downstream(store, artifact.id, type_name) if artifact is not None else []
    return found[-1] if found else None


def model_chain(store, pipeline_name: str, version: str) -> Optional[List[Link]]:
    """The chain of a pushed version (None if ML Metadata has no push of it): along `upstream` of its
    PushedModel (the data it was trained on, schema, transform graph, model, blessing), with what the same
    data and model led to beside it (statistics, anomalies and their gate, profile and drift verdict,
    evaluation, TFLite export)."""
    pushed = pushed_model(store, pipeline_name, version)
    if pushed is None:
        return None
    chain = upstream(store, pushed.id, pipeline_name)
    producers = {node.artifact_id: node.producer for node in chain.nodes}
    pusher = producer(store, pushed.id)
    model = (inputs(store, pusher.id, "model") or [None])[0]
    trainer = producer(store, model.id) if model is not None else None
    examples = training_examples(store, pipeline_name, version)
    found: List[Tuple[str, object, Dict[str, object]]] = []

    def add(step: str, artifact, **details) -> None:
        if artifact is not None:
            found.append((step, artifact, {k: v for k, v in details.items() if v is not None}))

    if examples is not None:
        example_gen = producer(store, examples.id)
        add("span", examples, span=_custom(examples, "span"),
            input_base=_custom(example_gen, "input_base") if example_gen else None,
            input_fingerprint=_custom(examples, "input_fingerprint"))
    statistics = _newest_downstream(store, examples, "ExampleStatistics")
    add("statistics", statistics)
    schema = (inputs(store, trainer.id, "schema") or [None])[0] if trainer else None
    add("schema", schema)
    anomalies = _newest_downstream(store, statistics, "ExampleAnomalies")
    add("anomalies", anomalies)
    gate = _newest_downstream(store, anomalies, "tfxline.AnomalyReport")
    add("gate", gate, passed=_custom(gate, "passed") if gate else None,
        anomalies=_custom(gate, "anomalies") if gate else None)
    profile = _newest_downstream(store, examples, "tfxline.DataProfile")
    drift = _newest_downstream(store, profile, "tfxline.DriftReport")
    add("drift", drift, **({name: _custom(drift, name) for name in ("has_baseline", "drifted", "blocked")}
                           if drift else {}))
    add("transform", (inputs(store, trainer.id, "transform_graph") or [None])[0] if trainer else None)
    if model is not None:
        settings = _custom(trainer, "custom_config") if trainer else None
        settings = settings if isinstance(settings, dict) else {}
        config = settings.get("config")
        add("model", model, code_version=settings.get("code_version"),
            config_fingerprint=hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
            if config is not None else None)
    add("evaluation", evaluation(store, pipeline_name, version))
    blessing = (inputs(store, pusher.id, "model_blessing") or [None])[0] if pusher else None
    add("blessing", blessing, blessed=_custom(blessing, "blessed") if blessing else None)
    add("push", pushed, pushed_version=_custom(pushed, "pushed_version"),
        pushed_destination=_custom(pushed, "pushed_destination"))
    edge = _newest_downstream(store, pushed, "tfxline.EdgeModel")
    add("tflite", edge, edge_version=_custom(edge, "edge_version") if edge else None,
        edge_path=_custom(edge, "edge_path") if edge else None)
    links = []
    for step, artifact, details in found:
        written_by = producers.get(artifact.id)
        if written_by is None:
            execution = producer(store, artifact.id)
            written_by = runs.component_run(store, execution, pipeline_name).node_id if execution else None
        links.append(Link(step, artifact.id, artifact_type(store, artifact), artifact.uri, written_by, details))
    return links
