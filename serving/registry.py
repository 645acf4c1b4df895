"""Which model versions are loaded and which one answers a request, with TF Serving's rules:
numeric version directories under each base path, version policies (latest N, all, specific),
version labels, and availability-preserving transitions (a new version loads while the old one
keeps serving; a version that fails to load never replaces a good one)."""
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
        self._lock = threading.Lock()
        self._specs: Dict[str, ModelSpec] = {}
        self._versions: Dict[str, Dict[int, VersionState]] = {}
        self._labels: Dict[str, Dict[str, int]] = {}
        self._sync_lock = threading.Lock()

    @property
    def model_names(self) -> List[str]:
        return list(self._specs)

    def configure(self, specs: List[ModelSpec]) -> None:
        """Replaces the served models (absent ones are unloaded), loads what the new config
        aspires, then applies its labels. Raises ServingError if a label cannot be applied; the
        old labels then stay."""
        names = [spec.name for spec in specs]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ServingError("INVALID_ARGUMENT", f"Illegal to list model {duplicate} multiple times in config list")
        with self._lock:
            for spec in specs:
                self._versions.setdefault(spec.name, {})
            for gone in set(self._specs) - set(names):
                for state in self._versions.pop(gone, {}).values():
                    state.servable = None
                self._labels.pop(gone, None)
            self._specs = {spec.name: spec for spec in specs}
        self.sync()
        self._apply_labels(specs)

    def _apply_labels(self, specs: List[ModelSpec]) -> None:
        new_labels = {}
        for spec in specs:
            current = self._labels.get(spec.name, {})
            for label, version in spec.labels.items():
                state = self._versions[spec.name].get(version)
                available = state is not None and state.state == "AVAILABLE"
                moving = label in current and current[label] != version
                if not available and (moving or not self._allow_unavailable_labels):
                    raise ServingError(
                        "FAILED_PRECONDITION",
                        f"Request to assign label to version {version} of model {spec.name}, which is not "
                        "currently available for inference")
            new_labels[spec.name] = dict(spec.labels)
        with self._lock:
            self._labels = new_labels

    def sync(self) -> None:
        """One pass over every base path: load newly aspired versions (highest first), then
        unload versions no longer aspired once an aspired one is available."""
        with self._sync_lock:
            for spec in list(self._specs.values()):
                self._sync_model(spec)

    def _sync_model(self, spec: ModelSpec) -> None:
        try:
            if not layout.isdir(spec.base_path):
                log.error("Could not find base path %s for servable %s", spec.base_path, spec.name)
                return
            on_disk = self._list_versions(spec.base_path)
        except OSError as error:  # an unreachable filesystem: what is loaded keeps serving
            log.error("Could not list base path %s for servable %s: %s", spec.base_path, spec.name, error)
            return
        if not on_disk:
            log.warning("No versions of servable %s found under base path %s. Did you forget to name your leaf "
                        "directory as a number (eg. '/1/')?", spec.name, spec.base_path)
        wanted = aspired(spec, on_disk)
        states = self._versions.setdefault(spec.name, {})
        for version in sorted(wanted, reverse=True):
            state = states.get(version)
            if state is not None and (state.state in ("AVAILABLE", "LOADING")
                                      or (state.state == "END" and not self._should_retry(state))):
                continue
            self._load(spec, version, states)
        if self._fall_back_to_older and not any(s.servable is not None for s in states.values()):
            for version in sorted(set(on_disk) - set(wanted), reverse=True):
                if version not in states or self._should_retry(states[version]):
                    self._load(spec, version, states)
                    if states[version].servable is not None:
                        return
        if any(states[v].state == "AVAILABLE" for v in wanted if v in states) or not wanted:
            for version, state in states.items():
                if version not in wanted and state.state == "AVAILABLE":
                    state.state = "UNLOADING"
                    with self._lock:
                        state.servable = None
                    state.state = "END"
                    log.info("model %s: unloaded version %d", spec.name, version)

    def _should_retry(self, state: VersionState) -> bool:
        return (state.servable is None and state.error_code != "OK" and state.failures <= self._max_load_retries
                and time.monotonic() >= state.retry_at)

    def _load(self, spec: ModelSpec, version: int, states: Dict[int, VersionState]) -> None:
        state = states.setdefault(version, VersionState())
        state.state = "LOADING"
        path = layout.join(spec.base_path, str(version))
        try:
            servable = self._loader(spec.name, version, path)
        except Exception as error:  # any failure only marks this version; the old one keeps serving
            state.failures += 1
            state.retry_at = time.monotonic() + self._retry_interval
            state.state, state.error_code = "END", "UNKNOWN"
            state.error_message = f"Failed to load version {version} of model {spec.name} from {path}: {error}"
            log.error("%s", state.error_message)
            return
        # A loaded model brings hundreds of thousands of long-lived Python objects; moving them
        # out of the collector's reach keeps full collections from pausing requests for ~100 ms.
        gc.freeze()
        with self._lock:
            state.servable = servable
            state.state, state.error_code, state.error_message = "AVAILABLE", "OK", ""
        log.info("model %s: version %d is available", spec.name, version)

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> Servable:
        """The servable a request names: by label, else by version, else the latest available."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        with self._lock:
            if label is not None:
                version = self._labels.get(name, {}).get(label)
                if version is None:
                    raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            states = self._versions.get(name, {})
            if version is not None:
                state = states.get(version)
                if state is None or state.servable is None:
                    raise servable_not_found(name, version)
                return state.servable
            available = [v for v, s in states.items() if s.servable is not None]
            if not available:
                raise servable_not_found(name)
            return states[max(available)].servable

    def status(self, name: str, version: Optional[int] = None) -> List[Tuple[int, VersionState]]:
        """Every version ever seen, newest first (failed and unloaded ones stay, as END)."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
        with self._lock:
            states = dict(self._versions.get(name, {}))
        if not states:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        return sorted(states.items(), reverse=True)

    def startup_errors(self) -> List[str]:
        """Load errors of models that have no available version: TF Serving refuses to start then."""
        with self._lock:
            return [state.error_message for name in self._specs
                    if not any(s.servable is not None for s in self._versions[name].values())
                    for state in self._versions[name].values() if state.error_message]

    def labels(self, name: str) -> Dict[str, int]:
        with self._lock:
            return dict(self._labels.get(name, {}))

    def ready(self) -> bool:
        with self._lock:
            return bool(self._specs) and all(
                any(s.servable is not None for s in self._versions.get(name, {}).values()) for name in self._specs)

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
