"""Which model versions are loaded and which one answers a request, with TF Serving's rules:
numeric version directories under each base path, version policies (latest N, all, specific),
version labels, and availability-preserving transitions (a new version loads while the old one
keeps serving; a version that fails to load never replaces a good one).

One state machine: configure (a new config) and sync (a pass over the base paths) run one at a
time, in the caller's thread, never on an event loop. Each ends by publishing one table of what
serves: specs, versions and labels together, so a request sees the old config or the new one,
never a mix; a model a new config drops stops serving at that moment. Requests read the table
without a lock. Versions that stop serving are released with the table that held them, once the
requests still using them finish (no gc.freeze: it kept every previous version alive)."""
import dataclasses
import gc
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from serving import layout
from serving.errors import ServingError, servable_not_found
from serving.servable import Servable

log = logging.getLogger("tfxline.serving")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model as `models.config` describes it."""
    name: str
    base_path: str
    policy: Tuple = ("latest", 1)  # ("latest", n) | ("all",) | ("specific", (v, ...))
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class VersionState:
    state: str = "START"  # START, LOADING, AVAILABLE, UNLOADING, END (TF Serving's names)
    error_code: str = "OK"
    error_message: str = ""
    servable: Optional[Servable] = None
    failures: int = 0
    retry_at: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Serving:
    """What one model serves: versions by number, the latest, labels."""
    versions: Dict[int, Servable]
    latest: Optional[Servable]
    labels: Dict[str, int]


def aspired(spec: ModelSpec, on_disk: List[int]) -> List[int]:
    kind = spec.policy[0]
    if kind == "all":
        return list(on_disk)
    if kind == "specific":
        wanted = set(spec.policy[1])
        for missing in sorted(wanted - set(on_disk)):
            log.warning("model %s: version %d is in the version policy but not under %s", spec.name, missing,
                        spec.base_path)
        return [v for v in on_disk if v in wanted]
    return on_disk[-max(1, spec.policy[1]):]


class ModelRegistry:
    def __init__(self, loader: Callable[[str, int, str], Servable], max_load_retries: int = 5,
                 load_retry_interval: float = 60.0, allow_labels_for_unavailable: bool = False,
                 fall_back_to_older: bool = False, list_versions: Callable[[str], List[int]] = layout.versions):
        self._loader = loader
        # TF Serving's rule (every numeric directory) unless the caller knows a marker file.
        self._list_versions = list_versions
        # TF Serving loads only the aspired versions; an edge device with nothing else to serve
        # is better off with the newest older version that loads.
        self._fall_back_to_older = fall_back_to_older
        self._max_load_retries = max_load_retries
        self._retry_interval = load_retry_interval
        self._allow_unavailable_labels = allow_labels_for_unavailable
        self._transitions = threading.Lock()  # one configure or sync at a time
        self._status_lock = threading.Lock()  # version states, read by status requests
        self._specs: Dict[str, ModelSpec] = {}
        self._versions: Dict[str, Dict[int, VersionState]] = {}
        self._labels: Dict[str, Dict[str, int]] = {}
        self._serving: Dict[str, _Serving] = {}  # replaced whole, never changed in place

    @property
    def model_names(self) -> List[str]:
        return list(self._specs)

    def serves(self, name: str) -> bool:
        return name in self._serving

    # ---------------------------------------------------------------- transitions

    def configure(self, specs: List[ModelSpec]) -> None:
        """Replaces the served models: loads what the new config aspires (the old config serving
        meanwhile), checks its labels, then switches to it at once; absent models are unloaded.
        Raises ServingError if a label cannot be applied: then nothing changes (versions loaded
        for the refused config are dropped)."""
        names = [spec.name for spec in specs]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ServingError("INVALID_ARGUMENT", f"Illegal to list model {duplicate} multiple times in config list")
        with self._transitions:
            before = {name: dict(states) for name, states in self._versions.items()}
            new_specs = {spec.name: spec for spec in specs}
            versions = {name: dict(self._versions.get(name, {})) for name in new_specs}
            wanted = {spec.name: self._load_aspired(spec, versions[spec.name]) for spec in specs}
            try:
                labels = self._checked_labels(specs, versions)
            except ServingError:
                with self._status_lock:
                    self._versions = before
                for name, states in versions.items():
                    for version, state in states.items():
                        if before.get(name, {}).get(version) is not state:
                            state.servable = None
                raise
            self._publish(new_specs, versions, labels, wanted)

    def sync(self) -> None:
        """One pass over every base path: load newly aspired versions (highest first), then
        unload versions no longer aspired once an aspired one is available."""
        with self._transitions:
            versions = {name: dict(self._versions.get(name, {})) for name in self._specs}
            wanted = {name: self._load_aspired(spec, versions[name]) for name, spec in self._specs.items()}
            self._publish(dict(self._specs), versions, self._labels, wanted)

    def _checked_labels(self, specs: List[ModelSpec], versions: Dict[str, Dict[int, VersionState]]):
        labels = {}
        for spec in specs:
            current = self._labels.get(spec.name, {})
            for label, version in spec.labels.items():
                state = versions[spec.name].get(version)
                available = state is not None and state.state == "AVAILABLE"
                moving = label in current and current[label] != version
                if not available and (moving or not self._allow_unavailable_labels):
                    raise ServingError(
                        "FAILED_PRECONDITION",
                        f"Request to assign label to version {version} of model {spec.name}, which is not "
                        "currently available for inference")
            labels[spec.name] = dict(spec.labels)
        return labels

    def _publish(self, specs: Dict[str, ModelSpec], versions: Dict[str, Dict[int, VersionState]],
                 labels: Dict[str, Dict[str, int]], wanted: Dict[str, Optional[List[int]]]) -> None:
        """Unloads versions no longer aspired (once an aspired one serves), then swaps in the new
        serving table. `wanted` is None for a model whose base path could not be read: it keeps
        what it serves."""
        unloaded = 0
        for name, states in versions.items():
            aspired_now = wanted[name]
            if aspired_now is None:
                continue
            if self._fall_back_to_older and not any(states[v].servable is not None
                                                    for v in aspired_now if v in states):
                loaded = [v for v, s in states.items() if s.servable is not None]
                aspired_now = loaded and [max(loaded)]
            if any(states[v].state == "AVAILABLE" for v in aspired_now if v in states) or not aspired_now:
                for version, state in states.items():
                    if version not in aspired_now and state.state == "AVAILABLE":
                        with self._status_lock:
                            state.state, state.servable = "END", None
                        unloaded += 1
                        log.info("model %s: unloaded version %d", name, version)
        serving = {}
        for name, states in versions.items():
            available = {v: s.servable for v, s in states.items() if s.servable is not None}
            serving[name] = _Serving(available, available[max(available)] if available else None,
                                     dict(labels.get(name, {})))
        removed = set(self._specs) - set(specs)
        with self._status_lock:
            self._specs, self._versions, self._labels = specs, versions, labels
            self._serving = serving
        for name in removed:
            log.info("model %s is no longer in the config; unloaded", name)
        if removed or unloaded:
            # Versions that stopped serving sit in reference cycles (TensorFlow graphs): free them
            # now rather than at some later collection.
            gc.collect()

    def _load_aspired(self, spec: ModelSpec, states: Dict[int, VersionState]) -> Optional[List[int]]:
        """Loads the aspired versions not loaded yet; returns them, or None if the base path is missing."""
        try:
            if not layout.isdir(spec.base_path):
                log.error("Could not find base path %s for servable %s", spec.base_path, spec.name)
                return None
            on_disk = self._list_versions(spec.base_path)
        except OSError as error:  # an unreachable filesystem: what is loaded keeps serving
            log.error("Could not list base path %s for servable %s: %s", spec.base_path, spec.name, error)
            return None
        if not on_disk:
            log.warning("No versions of servable %s found under base path %s. Did you forget to name your leaf "
                        "directory as a number (eg. '/1/')?", spec.name, spec.base_path)
        wanted = aspired(spec, on_disk)
        for version in sorted(wanted, reverse=True):
            state = states.get(version)
            failed = state is not None and state.state == "END" and state.error_code != "OK"
            if state is not None and (state.state == "AVAILABLE" or (failed and not self._should_retry(state))):
                continue  # an unloaded version (END, OK) that is aspired again loads again
            self._load(spec, version, states)
        if self._fall_back_to_older and not any(s.servable is not None for s in states.values()):
            for version in sorted(set(on_disk) - set(wanted), reverse=True):
                if version not in states or self._should_retry(states[version]):
                    self._load(spec, version, states)
                    if states[version].servable is not None:
                        break
        return wanted

    def _should_retry(self, state: VersionState) -> bool:
        return (state.servable is None and state.error_code != "OK" and state.failures <= self._max_load_retries
                and time.monotonic() >= state.retry_at)

    def _load(self, spec: ModelSpec, version: int, states: Dict[int, VersionState]) -> None:
        previous = states.get(version)
        state = VersionState(failures=previous.failures if previous else 0, state="LOADING")
        states[version] = state
        with self._status_lock:  # status shows LOADING while the load runs
            self._versions.setdefault(spec.name, {})[version] = state
        path = layout.join(spec.base_path, str(version))
        try:
            servable = self._loader(spec.name, version, path)
        except Exception as error:  # any failure only marks this version; the old one keeps serving
            with self._status_lock:
                state.failures += 1
                state.retry_at = time.monotonic() + self._retry_interval
                state.state, state.error_code = "END", "UNKNOWN"
                state.error_message = f"Failed to load version {version} of model {spec.name} from {path}: {error}"
            log.error("%s", state.error_message)
            return
        with self._status_lock:
            state.servable = servable
            state.state, state.error_code, state.error_message = "AVAILABLE", "OK", ""
        log.info("model %s: version %d is available", spec.name, version)

    # ---------------------------------------------------------------- reads

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> Servable:
        """The servable a request names: by label, else by version, else the latest available."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        serving = self._serving.get(name)
        if label is not None:
            version = serving.labels.get(label) if serving is not None else None
            if version is None:
                raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
        if serving is None:
            raise servable_not_found(name, version)
        if version is not None:
            servable = serving.versions.get(version)
            if servable is None:
                raise servable_not_found(name, version)
            return servable
        if serving.latest is None:
            raise servable_not_found(name)
        return serving.latest

    def status(self, name: str, version: Optional[int] = None) -> List[Tuple[int, VersionState]]:
        """Every version ever seen, newest first (failed and unloaded ones stay, as END)."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
        with self._status_lock:
            states = {v: dataclasses.replace(s) for v, s in self._versions.get(name, {}).items()}
        if not states:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        return sorted(states.items(), reverse=True)

    def startup_errors(self) -> List[str]:
        """Load errors of models that have no available version: TF Serving refuses to start then."""
        with self._status_lock:
            return [state.error_message for name in self._specs
                    if not any(s.servable is not None for s in self._versions[name].values())
                    for state in self._versions[name].values() if state.error_message]

    def ready(self) -> bool:
        serving = self._serving
        return bool(self._specs) and all(name in serving and serving[name].latest is not None for name in self._specs)

    def watch(self, poll_seconds: float, stop: threading.Event,
              reload_config: Optional[Callable[[], None]] = None, config_poll_seconds: float = 0) -> None:
        """Polls base paths (and the config file, if asked) until `stop` is set."""
        next_config = time.monotonic() + config_poll_seconds
        while not stop.wait(poll_seconds):
            if reload_config is not None and config_poll_seconds > 0 and time.monotonic() >= next_config:
                next_config = time.monotonic() + config_poll_seconds
                try:
                    reload_config()
                except (ServingError, ValueError, OSError) as error:
                    log.error("config reload failed, the previous config keeps serving: %s", error)
            self.sync()
