"""Runs a compiled Kubeflow spec on this machine the way Kubeflow Pipelines runs it in pods: task
by task in dependency order, each as a fresh process with the exact command and arguments the
spec gives its container, and a local directory standing in for the object stores.

What the backend's driver and launcher do (kubeflow/pipelines backend/src/v2, driver/resolve.go,
driver/driver.go provisionOutputs, component/launcher_v2.go) is done here the same way:
- parameters: a task's constants, or the run's value of a pipeline input (else its default);
- input artifacts: the producer task's outputs, as its executor output file reported them;
- output artifacts: `<pipeline root>/<pipeline>/<run id>/<task>/<uuid>/<output key>`, typed as the
  component declares them, plus KFP's own `executor-logs` output (publish_logs, on by default
  since KFP 2.5), into which the task's log is written;
- the executor output file `<task root>/output_metadata.json`, whose artifacts are merged into
  the outputs (URI and metadata);
- placeholders: `{{$}}` is the whole ExecutorInput as JSON, and `{{$.inputs.parameters['x']}}`,
  `{{$.inputs.artifacts['x'].uri}}` and their kin are substituted in the command and arguments;
- the container's `python` is this environment's interpreter (as kfp.local does).
Open-source KFP never runs a container's `lifecycle.preCacheCheck` (ExampleGen's driver); Vertex
does. `run_hooks` says which of the two to follow. Resolver tasks (Vertex only) are answered from
this store's record of earlier runs: the latest blessed ModelBlessing, then the Model it names.
The backend's cache is not emulated: every task runs.

The store: a gs://B/P URI lives at <store>/gcs/B/P (s3:// at s3/, minio:// at minio/), the
paths KFP's launcher mounts them at. Every such URI a pod is given is rewritten to its local path,
and the local paths a pod reports are mapped back, so the record holds URIs as the backend does."""
import concurrent.futures
import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional, Tuple


STORE_DIRECTORIES = {"gs": "gcs", "s3": "s3", "minio": "minio"}
EXECUTOR_LOGS = "executor-logs"
_URI_PREFIX = re.compile(r"\b(gs|s3|minio)://")
RECORD_FILE = "runs.jsonl"
# Each run's tasks (their commands, ExecutorInputs and outputs), as `tfxline dry-run` writes them.
RUNS_DIRECTORY = ".tfxline-dry-runs"


class SpecRunError(RuntimeError):
    """A task failed, or the spec asks for something the backend would refuse."""


class ObjectStore:
    """A directory standing in for gs://, s3:// and minio:// buckets."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        if any(c in self.root for c in '"\\'):
            raise ValueError(f"{self.root}: a store path must not contain quotes or backslashes (it goes into JSON)")
        os.makedirs(self.root, exist_ok=True)

    def local(self, text: str) -> str:
        """Every store URI in `text` rewritten to its local path."""
        return _URI_PREFIX.sub(lambda m: f"{self.root}/{STORE_DIRECTORIES[m.group(1)]}/", text)

    def uri(self, text: str) -> str:
        """The inverse of `local`."""
        for scheme, directory in STORE_DIRECTORIES.items():
            text = text.replace(f"{self.root}/{directory}/", f"{scheme}://")
        return text


@dataclasses.dataclass
class TaskRun:
    name: str
    seconds: float
    outputs: Dict[str, List[dict]]  # output key -> RuntimeArtifacts (JSON form), URIs as the backend has them
    argv: List[str] = dataclasses.field(default_factory=list)
    executor_input: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SpecRun:
    run_id: str
    tasks: Dict[str, TaskRun]
    seconds: float

    def artifact(self, task: str, key: str) -> Optional[dict]:
        artifacts = self.tasks[task].outputs.get(key) or []
        return artifacts[0] if artifacts else None

    def write(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            json.dump(dataclasses.asdict(self), handle, indent=1)

    @classmethod
    def read(cls, path: str) -> "SpecRun":
        with open(path) as handle:
            raw = json.load(handle)
        return cls(raw["run_id"], {name: TaskRun(**task) for name, task in raw["tasks"].items()}, raw["seconds"])


def task_order(spec: dict) -> List[str]:
    """Tasks in dependency order (dependentTasks and producer tasks of inputs), ties by name."""
    tasks = spec["root"]["dag"]["tasks"]
    needs = {name: set(upstream_tasks(task)) for name, task in tasks.items()}
    unknown = {dep for deps in needs.values() for dep in deps} - set(tasks)
    if unknown:
        raise SpecRunError(f"tasks depend on tasks the DAG lacks: {sorted(unknown)}")
    order: List[str] = []
    while needs:
        ready = sorted(name for name, deps in needs.items() if deps <= set(order))
        if not ready:
            raise SpecRunError(f"the DAG has a cycle among {sorted(needs)}")
        order.append(ready[0])
        del needs[ready[0]]
    return order


def upstream_tasks(task: dict) -> List[str]:
    inputs = task.get("inputs", {})
    producers = [spec["taskOutputArtifact"]["producerTask"] for spec in inputs.get("artifacts", {}).values()
                 if "taskOutputArtifact" in spec]
    producers += [spec["taskOutputParameter"]["producerTask"] for spec in inputs.get("parameters", {}).values()
                  if "taskOutputParameter" in spec]
    return sorted(set(task.get("dependentTasks", [])) | set(producers))


def _check_value(name: str, parameter_type: str, value):
    expected = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": (int, float), "STRING": str, "BOOLEAN": bool,
                "LIST": list, "STRUCT": dict}.get(parameter_type)
    is_bool_number = parameter_type.startswith("NUMBER") and isinstance(value, bool)
    if expected and (not isinstance(value, expected) or is_bool_number):
        raise SpecRunError(f"run parameter {name}: {value!r} is not {parameter_type}")
    if parameter_type == "NUMBER_INTEGER" and isinstance(value, float) and not value.is_integer():
        raise SpecRunError(f"run parameter {name}: {value!r} is not an integer")
    return value


def pipeline_inputs(spec: dict, overrides: Dict[str, object]) -> Dict[str, object]:
    """The run's pipeline inputs: each override, else the declared default (driver/resolve.go)."""
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise SpecRunError(f"the pipeline has no parameter {sorted(unknown)}; it has {sorted(declared)}")
    values = {}
    for name, definition in declared.items():
        if name in overrides:
            values[name] = _check_value(name, definition.get("parameterType", ""), overrides[name])
        elif "defaultValue" in definition:
            values[name] = definition["defaultValue"]
        elif not definition.get("isOptional"):
            raise SpecRunError(f"neither value nor default value provided for non-optional parameter {name!r}")
    return values


class SpecRunner:
    def __init__(self, spec: dict, store: ObjectStore, pipeline_root: str, python: str = sys.executable,
                 run_hooks: bool = False, publish_logs: bool = True, extra_env: Optional[Dict[str, str]] = None,
                 write: Callable[[str], None] = lambda line: None):
        if spec.get("schemaVersion") != "2.1.0":
            raise SpecRunError(f"schema {spec.get('schemaVersion')}: this runner follows the 2.1 spec "
                               "(parameterValues)")
        self.spec, self.store, self.python = spec, store, python
        self.pipeline_root = pipeline_root.rstrip("/")
        self.run_hooks, self.publish_logs = run_hooks, publish_logs
        from pipeline.local import KERAS_ENV  # what the image sets (Dockerfile ENV)

        self.env = {**os.environ, **KERAS_ENV, **(extra_env or {})}
        self.write = write
        self._record_lock = threading.Lock()

    # ---- what the driver does --------------------------------------------------------------

    def _parameter(self, name: str, parameter_spec: dict, inputs: Dict[str, object], run_id: str, task: str):
        if "componentInputParameter" in parameter_spec:
            key = parameter_spec["componentInputParameter"]
            if key not in inputs:
                raise SpecRunError(f"{task}: parent DAG does not have input parameter {key}")
            return inputs[key]
        if "runtimeValue" in parameter_spec:
            runtime_value = parameter_spec["runtimeValue"]
            if "constant" not in runtime_value:
                # The open-source driver: "param runtime value spec of type ... not implemented" (2.0 constants).
                raise SpecRunError(f"{task}: parameter {name} is not a 2.1 constant: {sorted(runtime_value)}")
            value = runtime_value["constant"]
            job = {"{{$.pipeline_job_name}}": run_id, "{{$.pipeline_job_resource_name}}": run_id,
                   "{{$.pipeline_job_uuid}}": run_id, "{{$.pipeline_task_name}}": task}
            return job.get(value, value) if isinstance(value, str) else value
        raise SpecRunError(f"{task}: parameter {name} has an input kind this runner does not follow: {parameter_spec}")

    def _outputs(self, task: str, component: dict, run_id: str) -> dict:
        task_root = f"{self.pipeline_root}/{self.spec['pipelineInfo']['name']}/{run_id}/{task}/{uuid.uuid4()}"
        declared = dict(component.get("outputDefinitions", {}).get("artifacts", {}))
        if self.publish_logs:
            declared[EXECUTOR_LOGS] = {"artifactType": {"schemaTitle": "system.Artifact"}}
        artifacts = {key: {"artifacts": [{"name": f"{run_id}/{task}/{key}", "uri": f"{task_root}/{key}",
                                          "type": definition["artifactType"]}]}
                     for key, definition in declared.items()}
        parameters = {key: {"outputFile": f"/tmp/kfp/outputs/{key}"}
                      for key in component.get("outputDefinitions", {}).get("parameters", {})}
        return {"artifacts": artifacts, "parameters": parameters, "outputFile": f"{task_root}/output_metadata.json"}

    # ---- what the launcher does -------------------------------------------------------------

    @staticmethod
    def _placeholders(executor_input: dict) -> Dict[str, str]:
        values = {}
        for name, artifact_list in executor_input["inputs"].get("artifacts", {}).items():
            if artifact_list["artifacts"]:
                values[f"{{{{$.inputs.artifacts['{name}'].uri}}}}"] = artifact_list["artifacts"][0]["uri"]
        for name, artifact_list in executor_input["outputs"]["artifacts"].items():
            values[f"{{{{$.outputs.artifacts['{name}'].uri}}}}"] = artifact_list["artifacts"][0]["uri"]
        for name, value in executor_input["inputs"].get("parameterValues", {}).items():
            values[f"{{{{$.inputs.parameters['{name}']}}}}"] = value if isinstance(value, str) else json.dumps(value)
        for name, parameter in executor_input["outputs"].get("parameters", {}).items():
            values[f"{{{{$.outputs.parameters['{name}'].output_file}}}}"] = parameter["outputFile"]
        return values

    def _argv(self, command: List[str], args: List[str], executor_input: dict) -> List[str]:
        whole = json.dumps(executor_input, sort_keys=True)
        placeholders = self._placeholders(executor_input)
        argv = []
        for word in list(command) + list(args):
            word = word.replace("{{$}}", whole)
            for placeholder, value in placeholders.items():
                word = word.replace(placeholder, value)
            argv.append(self.store.local(word))
        if argv and argv[0] in ("python", "python3"):
            argv[0] = self.python
        return argv

    def _execute(self, task: str, argv: List[str], log_uri: Optional[str]) -> None:
        log_path = self.store.local(log_uri) if log_uri else os.path.join(self.store.root, f".{task}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        workdir = os.path.join(self.store.root, ".pods", task)
        os.makedirs(workdir, exist_ok=True)
        with open(log_path, "ab") as log:
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=self.env)
        if result.returncode != 0:
            with open(log_path, "rb") as log:
                tail = log.read()[-3000:].decode("utf-8", "replace")
            raise SpecRunError(f"task {task} failed (exit {result.returncode}); its log, {log_path}, ends:\n{tail}")

    def _merge_executor_output(self, outputs: dict) -> Dict[str, List[dict]]:
        merged = {key: [dict(artifact) for artifact in value["artifacts"]]
                  for key, value in outputs["artifacts"].items()}
        path = self.store.local(outputs["outputFile"])
        if os.path.exists(path):
            with open(path) as handle:
                reported = json.loads(self.store.uri(handle.read()))
            for key, value in reported.get("artifacts", {}).items():
                if key in merged and key != EXECUTOR_LOGS and value.get("artifacts"):
                    artifact, source = merged[key][0], value["artifacts"][0]
                    if source.get("uri"):
                        artifact["uri"] = source["uri"]
                    if source.get("metadata"):
                        artifact["metadata"] = {**artifact.get("metadata", {}), **source["metadata"]}
        return merged

    # ---- resolver tasks (Vertex) ----------------------------------------------------------

    def _records(self) -> List[dict]:
        path = os.path.join(self.store.root, RECORD_FILE)
        if not os.path.exists(path):
            return []
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def _record(self, run_id: str, task: str, outputs: Dict[str, List[dict]]) -> None:
        with self._record_lock, open(os.path.join(self.store.root, RECORD_FILE), "a") as handle:
            for key, artifacts in outputs.items():
                for artifact in artifacts:
                    handle.write(json.dumps({"run_id": run_id, "task": task, "key": key, **artifact}) + "\n")

    @staticmethod
    def _title(artifact: dict) -> str:
        kind = artifact.get("type", {})
        if "schemaTitle" in kind:
            return kind["schemaTitle"]
        match = re.search(r"^title:\s*(\S+)", kind.get("instanceSchema", ""), re.MULTILINE)
        return match.group(1) if match else ""

    def _query(self, query: str, inputs: Dict[str, List[dict]], task: str) -> List[dict]:
        """The latest artifact of earlier runs matching a resolver filter (the `AND` of the conditions TFX writes)."""
        def input_metadata(match):
            artifacts = inputs.get(match.group(1)) or []
            value = artifacts[0].get("metadata", {}).get(match.group(2)) if artifacts else None
            return "" if value is None else str(value)
        query = re.sub(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\.metadata\['([^']+)'\]\}\}", input_metadata, query)
        conditions = []
        for clause in (part.strip() for part in query.split(" AND ")):
            if match := re.fullmatch(r'schema_title="([^"]+)"', clause):
                conditions.append(lambda a, title=match.group(1): self._title(a) == title)
            elif clause == "state=LIVE":
                continue
            elif match := re.fullmatch(r"metadata\.(\w+)\.number_value=(\S+)", clause):
                conditions.append(lambda a, key=match.group(1), value=float(match.group(2)):
                                  float(a.get("metadata", {}).get(key, "nan")) == value)
            elif match := re.fullmatch(r'name="([^"]*)"', clause):
                conditions.append(lambda a, name=match.group(1): a.get("name") == name)
            else:
                raise SpecRunError(f"{task}: resolver filter clause this runner does not follow: {clause}")
        found = [record for record in self._records() if all(condition(record) for condition in conditions)]
        if not found:
            return []
        latest = dict(found[-1])
        for key in ("run_id", "task", "key"):
            latest.pop(key)
        return [latest]

    # ---- a run ------------------------------------------------------------------------------

    def _run_task(self, name: str, inputs: Dict[str, object], run_id: str, done: Dict[str, TaskRun]) -> TaskRun:
        task = self.spec["root"]["dag"]["tasks"][name]
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        started = time.monotonic()
        artifacts = {}
        for key, artifact_spec in task.get("inputs", {}).get("artifacts", {}).items():
            producer = artifact_spec["taskOutputArtifact"]
            artifacts[key] = done[producer["producerTask"]].outputs.get(producer["outputArtifactKey"], [])
        if "resolver" in executor:
            outputs = {key: self._query(query["filter"], artifacts, name)
                       for key, query in executor["resolver"]["outputArtifactQueries"].items()}
            return TaskRun(name, time.monotonic() - started, outputs)
        if "container" not in executor:
            raise SpecRunError(f"{name}: executor kind {sorted(executor)} is not a container or resolver")
        container = executor["container"]
        executor_input = {
            "inputs": {"parameterValues": {key: self._parameter(key, spec, inputs, run_id, name)
                                           for key, spec in task.get("inputs", {}).get("parameters", {}).items()},
                       "artifacts": {key: {"artifacts": value} for key, value in artifacts.items()}},
            "outputs": self._outputs(name, component, run_id),
        }
        log_uri = executor_input["outputs"]["artifacts"].get(EXECUTOR_LOGS, {}).get("artifacts", [{}])[0].get("uri")
        hook = container.get("lifecycle", {}).get("preCacheCheck")
        if hook and self.run_hooks:
            self._execute(name, self._argv(hook.get("command", []), hook.get("args", []), executor_input), log_uri)
        argv = self._argv(container.get("command", []), container.get("args", []), executor_input)
        self._execute(name, argv, log_uri)
        outputs = self._merge_executor_output(executor_input["outputs"])
        self._record(run_id, name, {k: v for k, v in outputs.items() if k != EXECUTOR_LOGS})
        return TaskRun(name, time.monotonic() - started, outputs, argv, executor_input)

    def run(self, parameters: Optional[Dict[str, object]] = None, run_id: Optional[str] = None,
            parallel: Optional[int] = None) -> SpecRun:
        """One run. Tasks whose upstream tasks are done run at the same time, as the backend starts
        them (at most `parallel` at once; default: all that are ready). A failed task fails the run
        once the tasks already running have ended."""
        run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        inputs = pipeline_inputs(self.spec, parameters or {})
        tasks = self.spec["root"]["dag"]["tasks"]
        order = task_order(self.spec)
        needs = {name: set(upstream_tasks(tasks[name])) for name in order}
        started = time.monotonic()
        done: Dict[str, TaskRun] = {}
        failures: List[BaseException] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel or len(order)) as pool:
            running: Dict[concurrent.futures.Future, str] = {}
            while True:
                if not failures:
                    for name in [n for n in order if n not in done and n not in running.values()
                                 and needs[n] <= set(done)]:
                        if parallel and len(running) >= parallel:
                            break
                        self.write(f"{name:<46} running")
                        running[pool.submit(self._run_task, name, inputs, run_id, dict(done))] = name
                if not running:
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    try:
                        done[name] = future.result()
                    except BaseException as error:  # reported after the running tasks have ended
                        failures.append(error)
                        self.write(f"{name:<46} FAILED")
                        continue
                    self.write(f"{name:<46} done    {done[name].seconds:6.1f} s")
        if failures:
            raise failures[0]
        return SpecRun(run_id, {name: done[name] for name in order}, time.monotonic() - started)


def seed(store: ObjectStore, config) -> List[str]:
    """Copies what the pods read into the store, where they are not there yet: the config's CSV
    files to kubeflow.data_path, the curated schema to kubeflow.schema_path. Returns the URIs written."""
    import glob
    import shutil

    written = []
    data = store.local(config.kubeflow.data_path)
    if not glob.glob(os.path.join(data, "**", "*.csv"), recursive=True):
        os.makedirs(data, exist_ok=True)
        for path in sorted(glob.glob(os.path.join(config.data.path, "*.csv"))):
            shutil.copy(path, data)
        written.append(config.kubeflow.data_path)
    if config.schema_.source == "curated" and config.kubeflow.schema_path:
        schema = store.local(config.kubeflow.schema_path)
        if not os.path.exists(schema):
            os.makedirs(os.path.dirname(schema), exist_ok=True)
            shutil.copy(config.schema_.curated_path, schema)
            written.append(config.kubeflow.schema_path)
    return written


def dry_run(config, spec: dict, store: ObjectStore, target: str, parameters: Dict[str, object],
            write: Callable[[str], None] = print) -> Tuple[SpecRun, str]:
    """One run of the spec in the store, as the target's backend runs it; returns the run and the
    file its record is in (`<store>/.tfxline-dry-runs/<run id>.json`)."""
    runner = SpecRunner(spec, store, config.kubeflow.pipeline_root, run_hooks=target == "vertex", write=write)
    run = runner.run(parameters)
    path = os.path.join(store.root, RUNS_DIRECTORY, f"{run.run_id}.json")
    run.write(path)
    return run, path
