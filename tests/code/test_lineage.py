"""Runs and lineage read from a real SQLite ML Metadata store, recorded here the way TFX records a run:
a pipeline context, a run context per run, a node context per component, executions with input and
output events (a resolver's as INTERNAL_OUTPUT)."""
import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from metadata import lineage, runs

PIPELINE = "demo"
# component -> (inputs {key: [artifact name]}, outputs {key: (artifact name, type)})
RUN = [
    ("CsvExampleGen", {}, {"examples": ("examples", "Examples")}),
    ("ImportSchemaGen", {}, {"schema": ("schema", "Schema")}),
    ("StatisticsGen", {"examples": ["examples"]}, {"statistics": ("statistics", "ExampleStatistics")}),
    ("ExampleValidator", {"statistics": ["statistics"], "schema": ["schema"]},
     {"anomalies": ("anomalies", "ExampleAnomalies")}),
    ("AnomalyGate", {"anomalies": ["anomalies"]}, {"report": ("report", "tfxline.AnomalyReport")}),
    ("Transform", {"examples": ["examples"], "schema": ["schema"]}, {"transform_graph": ("graph", "TransformGraph")}),
    ("Trainer", {"examples": ["examples"], "transform_graph": ["graph"]}, {"model": ("model", "Model")}),
    ("latest_blessed_model_resolver", {}, {"model": ("old_model", None)}),
    ("Evaluator", {"examples": ["examples"], "model": ["model"], "baseline_model": ["old_model"]},
     {"evaluation": ("evaluation", "ModelEvaluation"), "blessing": ("blessing", "ModelBlessing")}),
    ("Pusher", {"model": ["model"], "model_blessing": ["blessing"]}, {"pushed_model": ("pushed", "PushedModel")}),
    ("TFLiteExport", {"model": ["model"], "pushed_model": ["pushed"]}, {"edge_model": ("edge", "tfxline.EdgeModel")}),
]


class Recorder:
    def __init__(self, path):
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.types = {}
        self.pipeline = self._context("pipeline", PIPELINE)

    def _type(self, kind, name):
        if (kind, name) not in self.types:
            put = {"artifact": self.store.put_artifact_type, "execution": self.store.put_execution_type,
                   "context": self.store.put_context_type}[kind]
            proto = {"artifact": mlmd.ArtifactType, "execution": mlmd.ExecutionType, "context": mlmd.ContextType}[kind]
            self.types[(kind, name)] = put(proto(name=name))
        return self.types[(kind, name)]

    def _context(self, kind, name):
        return self.store.put_contexts([mlmd.Context(type_id=self._type("context", kind), name=name)])[0]

    def artifact(self, type_name, uri, **properties):
        artifact = mlmd.Artifact(type_id=self._type("artifact", type_name), uri=uri)
        for key, value in properties.items():
            artifact.custom_properties[key].int_value = value
        return self.store.put_artifacts([artifact])[0]

    def run(self, run_id, artifacts=None):
        """Records one run; artifacts found earlier (by name) are reused, as a cached execution does."""
        run_context = self._context("pipeline_run", run_id)
        known = dict(artifacts or {})
        for component, inputs, outputs in RUN:
            node = self.store.get_context_by_type_and_name("node", f"{PIPELINE}.{component}") or \
                self.store.get_contexts_by_id([self._context("node", f"{PIPELINE}.{component}")])[0]
            execution = mlmd.Execution(type_id=self._type("execution", component),
                                       last_known_state=mlmd.Execution.COMPLETE)
            events = []
            for key, names in inputs.items():
                for name in names:
                    event = mlmd.Event(artifact_id=known[name], type=mlmd.Event.INPUT)
                    event.path.steps.add().key = key
                    events.append((event, None))
            for key, (name, type_name) in outputs.items():
                if type_name is None:  # a resolver: what it found
                    event = mlmd.Event(artifact_id=known[name], type=mlmd.Event.INTERNAL_OUTPUT)
                    event.path.steps.add().key = key
                    events.append((event, None))
                    continue
                artifact = mlmd.Artifact(type_id=self._type("artifact", type_name), uri=f"/{run_id}/{name}")
                event = mlmd.Event(type=mlmd.Event.OUTPUT)
                event.path.steps.add().key = key
                events.append((event, artifact))
            execution_id = self.store.put_execution(
                execution, [(a if a is not None else mlmd.Artifact(id=e.artifact_id), e) for e, a in events],
                [self.store.get_contexts_by_id([self.pipeline])[0], self.store.get_contexts_by_id([run_context])[0],
                 node], reuse_context_if_already_exist=True)[0]
            for event in self.store.get_events_by_execution_ids([execution_id]):
                if event.type == mlmd.Event.OUTPUT:
                    known[next(name for key, (name, t) in outputs.items()
                               if key == event.path.steps[0].key)] = event.artifact_id
        return known


@pytest.fixture()
def recorded(tmp_path):
    recorder = Recorder(tmp_path / "metadata.sqlite")
    old_model = recorder.artifact("Model", "/earlier/model")
    first = recorder.run("2026-01-01T10:00:00.000001", {"old_model": old_model})
    second = recorder.run("2026-01-02T10:00:00.000002", {"old_model": first["model"]})
    return recorder.store, old_model, first, second


def test_runs_are_listed_oldest_first_and_picked_by_id_or_prefix(recorded):
    store, *_ = recorded
    assert [r.run_id for r in runs.list_runs(store, PIPELINE)] == ["2026-01-01T10:00:00.000001",
                                                                   "2026-01-02T10:00:00.000002"]
    assert runs.run_id_of(store, next(iter(runs.run(store, PIPELINE).values()))) == "2026-01-02T10:00:00.000002"
    first = runs.run(store, PIPELINE, "2026-01-01")
    assert runs.run_id_of(store, first["Trainer"]) == "2026-01-01T10:00:00.000001"
    with pytest.raises(runs.UnknownRun, match="matches several runs of pipeline 'demo'"):
        runs.run(store, PIPELINE, "2026-01")
    with pytest.raises(runs.UnknownRun, match="'2025' is not a run of pipeline 'demo'"):
        runs.run(store, PIPELINE, "2025")
    assert runs.run(store, "other") == {}


def test_the_chain_of_a_run_in_order_with_its_baseline(recorded):
    store, old_model, first, second = recorded
    drawn = lineage.for_run(store, PIPELINE, "2026-01-02")
    assert drawn.run_id == "2026-01-02T10:00:00.000002"
    steps = [(node.step, node.role) for node in drawn.chain()]
    assert steps == [("span", ""), ("statistics", ""), ("schema", ""), ("anomalies", ""), ("gate", ""),
                     ("transform", ""), ("model", ""), ("model", "baseline"), ("evaluation", ""), ("blessing", ""),
                     ("push", ""), ("tflite", "")]
    baseline = drawn.step("model")[1]
    assert baseline.artifact_id == first["model"] and baseline.producer is None  # an earlier run's model
    edges = {(e.source, e.target, e.component) for e in drawn.edges}
    assert (second["model"], second["evaluation"], "Evaluator") in edges
    assert (first["model"], second["blessing"], "Evaluator") in edges
    assert not any(e.component == "latest_blessed_model_resolver" for e in drawn.edges)
    assert drawn.ordering == [("AnomalyGate", "Transform")]


def test_upstream_walks_from_the_edge_model_back_to_the_examples(recorded):
    store, old_model, first, second = recorded
    traced = lineage.upstream(store, second["edge"], PIPELINE)
    found = {node.artifact_id for node in traced.nodes}
    assert {second[name] for name in ("edge", "pushed", "model", "blessing", "graph", "examples", "schema")} <= found
    assert first["model"] in found and old_model not in found  # the baseline, not what it was compared with
    assert second["statistics"] not in found  # statistics feed the gate, not the model
    assert traced.components["Trainer"] == "COMPLETE"


def test_a_model_that_is_its_own_baseline_is_listed_under_both_keys_and_drawn_as_the_candidate(tmp_path):
    """TFX records one event for an artifact given under two keys: its path lists both."""
    recorder = Recorder(tmp_path / "metadata.sqlite")
    run_context = recorder._context("pipeline_run", "2026-01-03T10:00:00")
    contexts = recorder.store.get_contexts_by_id([recorder.pipeline, run_context])
    model = recorder.artifact("Model", "/model")
    trainer = mlmd.Execution(type_id=recorder._type("execution", "Trainer"), last_known_state=mlmd.Execution.CACHED)
    output = mlmd.Event(type=mlmd.Event.OUTPUT)
    output.path.steps.add().key = "model"
    node = recorder.store.get_contexts_by_id([recorder._context("node", f"{PIPELINE}.Trainer")])
    recorder.store.put_execution(trainer, [(mlmd.Artifact(id=model), output)], contexts + node)
    evaluator = mlmd.Execution(type_id=recorder._type("execution", "Evaluator"),
                               last_known_state=mlmd.Execution.COMPLETE)
    both = mlmd.Event(type=mlmd.Event.INPUT)
    for key in ("baseline_model", "model"):
        both.path.steps.add().key = key
        both.path.steps.add().index = 0
    node = recorder.store.get_contexts_by_id([recorder._context("node", f"{PIPELINE}.Evaluator")])
    recorder.store.put_execution(evaluator, [(mlmd.Artifact(id=model), both)], contexts + node)
    run = runs.run(recorder.store, PIPELINE)
    assert [a.id for a in run["Evaluator"].inputs["model"]] == [model]
    assert [a.id for a in run["Evaluator"].inputs["baseline_model"]] == [model]
    assert [(n.step, n.role) for n in lineage.for_run(recorder.store, PIPELINE).chain()] == [("model", "")]
