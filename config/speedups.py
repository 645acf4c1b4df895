"""Every speed-up of a local `tfxline run` that leans on another library's behaviour or internals.

Only `run_local` activates them (the `tfxline run` command and in-process callers such as the
tests); `compile`, `serve`, Kubeflow pods and every other command run without them, except
`review-tfma-protos` and `session-callable`, which the review and the server ask for with
`applies`. Each one names
the library version it was written against and is skipped, with one line on stderr, when another
version is installed. `TFXLINE_SPEEDUPS=0` (or `speedups: false` in the config) turns them all off,
`TFXLINE_SPEEDUPS=-name,-name` the named ones; a run without them gives the same examples, schema,
transform output and model scores (tests/e2e/test_speedups.py compares the artifacts).

Kept, with what each saved on one taxi run (about 48 s with all of them; the figures of the
commits that added them, re-measured in BENCHMARKS.md as a whole):
- beam-dofn-specs: `userstate.get_dofn_specs` wraps every method of a DoFn and takes its
  `inspect.signature` to find state and timer parameters, 4,201 times a run (6.6 s). The answer
  depends only on the DoFn's methods: cached by class and bound methods on the instance.
- beam-option-views: `PipelineOptions.view_as` builds an argparse parser and parses the flags again
  on each of 2,311 calls (2.8 s). Views of one options object share its values, so the first view
  of each class serves the later requests.
- beam-side-input-sizes: the state cache weighs each side input with objsize, which first collects
  the ids of every loaded module's globals (1.0 s). Beam's own filter already stops the walk at
  modules, classes and functions, the only ways a value reaches those dicts.
- beam-zlib-pickles: Beam compresses each pickled transform with bz2 level 9 for remote workers
  (1.0 s); the in-memory DirectRunner unpickles them in this process. Only with in-process workers:
  the fresh interpreters of multi-process workers read bz2 only.
- lazy-cloud-clients: Beam's IO modules import the BigQuery, BigQuery Storage and Pub/Sub clients,
  which a local run never calls (0.9 s of start-up). They load on first use instead
  (importlib's LazyLoader), so code that does use them gets them.
- collector-settings: what exists once the pipeline is built (TFX, TensorFlow, Beam) is frozen out
  of the garbage collector, and the gen-0 threshold raised while the pipeline runs (collection
  3.1 s -> 1.3 s).
- fast-exit: the command ends with `os._exit` once threads, exit handlers and output are done,
  skipping the interpreter's teardown of every object (1.0-1.5 s).
- tft-tracked-resources: the export tracks the Transform graph's tables and assets through the dict
  TFT's TransformFeaturesLayer keeps for them, not the layer itself (a Keras model), which
  tf.saved_model.save would trace again for Keras serialization (export 7.6 s -> 1.7 s).
- tflite-loaded-model: the TFLite parity check uses the SavedModel the converter already loaded
  instead of loading it a second time (1 s).
- review-tfma-protos: `tfxline review` and the notebooks read the Evaluator's output with TFMA's own
  proto modules, loaded without TFMA's package `__init__` (which imports TensorFlow and Beam: 10-15 s
  of a review that otherwise takes 1-2 s). Off, the review imports TFMA and reads the same records.
- session-callable: `tfxline serve` runs each signature through C++'s Session::MakeCallable, reached
  by a private method of tf.compat.v1.Session (20-25 us per single-example call against 100-140 us
  for the public `Session.make_callable`); off, the public callable gives the same answers
  (serving/saved_model.py; tests/serving/test_any_saved_model.py compares them).

Dropped: blocking the imports of pymongo and scikit-learn (0.3 s; a blocked import fails whoever
needs it, as `tfxline compile` did), and re-using TFT's pruned Transform graph across calls
(0.5 s for a patch of a private TFT object).
"""
import atexit
import base64
import contextlib
import dataclasses
import gc
import importlib.abc
import importlib.metadata
import importlib.util
import os
import sys
import threading
import types
import weakref
from typing import Callable, Dict, Iterator, List, Optional

SWITCH = "TFXLINE_SPEEDUPS"


@dataclasses.dataclass(frozen=True)
class Speedup:
    name: str
    distribution: str  # the package whose behaviour it relies on ("python" for the interpreter)
    written_for: str   # the version prefix it was written and tested against
    install: Optional[Callable[[], None]] = None  # None: the code that uses it asks `active(name)`


_active: set = set()


def _installed_version(distribution: str) -> str:
    if distribution == "python":
        return "{}.{}.{}".format(*sys.version_info[:3])
    return importlib.metadata.version(distribution)


def _switched_off(setting: str) -> set:
    """Names switched off by TFXLINE_SPEEDUPS: "0" all of them, "-a,-b" those two."""
    if setting.strip() in ("0", "false", "off"):
        return {speedup.name for speedup in SPEEDUPS}
    names = {item.strip()[1:] for item in setting.split(",") if item.strip().startswith("-")}
    unknown = names - {speedup.name for speedup in SPEEDUPS}
    if unknown:
        print(f"tfxline: {SWITCH} names unknown speed-ups {sorted(unknown)}; known: "
              f"{', '.join(s.name for s in SPEEDUPS)}", file=sys.stderr)
    return names


def activate(enabled: bool = True, beam_args: Optional[List[str]] = None) -> List[str]:
    """Installs the speed-ups for a local run; returns the names now active. Idempotent."""
    if not enabled:
        return sorted(_active)
    off = _switched_off(os.environ.get(SWITCH, "1"))
    for speedup in SPEEDUPS:
        if speedup.name in _active or speedup.name in off:
            continue
        if speedup.name == "beam-zlib-pickles" and not workers_in_process(beam_args or []):
            continue
        version = _installed_version(speedup.distribution)
        if not version.startswith(speedup.written_for):
            print(f"tfxline: speed-up '{speedup.name}' is off: written for {speedup.distribution} "
                  f"{speedup.written_for}*, {version} is installed", file=sys.stderr)
            continue
        if speedup.install is not None:
            speedup.install()
        _active.add(speedup.name)
    return sorted(_active)


def active(name: str) -> bool:
    return name in _active


def applies(name: str) -> bool:
    """Whether a speed-up that its own code installs (outside a local run) is on: not switched off by
    TFXLINE_SPEEDUPS and written for the installed version of its library."""
    speedup = next(s for s in SPEEDUPS if s.name == name)
    if name in _switched_off(os.environ.get(SWITCH, "1")):
        return False
    version = _installed_version(speedup.distribution)
    if not version.startswith(speedup.written_for):
        print(f"tfxline: speed-up '{name}' is off: written for {speedup.distribution} "
              f"{speedup.written_for}*, {version} is installed", file=sys.stderr)
        return False
    return True


def workers_in_process(args: List[str]) -> bool:
    """Whether Beam runs these pipeline args on the DirectRunner's in-memory workers."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

    options = PipelineOptions(args)
    return (options.view_as(StandardOptions).runner in (None, "DirectRunner")
            and options.view_as(DirectOptions).direct_running_mode == "in_memory")


# ---- lazy-cloud-clients ------------------------------------------------------------------------

LAZY_MODULES = ("google.cloud.bigquery", "google.cloud.bigquery_storage_v1", "google.cloud.pubsub")


class _LazyFinder(importlib.abc.MetaPathFinder):
    """Hands out LAZY_MODULES with a LazyLoader: the module runs at its first attribute access."""

    def find_spec(self, name, path=None, target=None):
        if name not in LAZY_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


def _install_lazy_cloud_clients() -> None:
    if not any(isinstance(finder, _LazyFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LazyFinder())


# ---- beam-dofn-specs, beam-option-views, beam-side-input-sizes ----------------------------------

_dofn_specs: dict = {}
_views: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_beam_originals: Dict[str, Callable] = {}


def _dofn_key(dofn):
    """None when the answer could depend on more than the class and bound methods."""
    cls = type(dofn)
    if hasattr(cls, "__getattr__") or hasattr(cls, "__slots__"):
        return None
    try:
        attributes = vars(dofn)
    except TypeError:
        return None
    bound = tuple(sorted((name, value.__func__) for name, value in attributes.items()
                         if isinstance(value, types.MethodType)))
    return cls, bound


def cached_dofn_specs(dofn):
    compute = _beam_originals["get_dofn_specs"]
    key = _dofn_key(dofn)
    if key is None:
        return compute(dofn)
    specs = _dofn_specs.get(key)
    if specs is None:
        specs = _dofn_specs[key] = compute(dofn)
    state_specs, timer_specs = specs
    # Callers get their own sets, as from Beam's function.
    return set(state_specs), set(timer_specs)


def cached_view(options, cls):
    views = _views.setdefault(options, {})
    view = views.get(cls)
    if view is None:
        view = views[cls] = _beam_originals["view_as"](options, cls)
    return view


def side_input_size(*objs) -> int:
    import objsize
    from apache_beam.runners.worker import statecache

    return objsize.get_deep_size(
        *objs, get_size_func=statecache._size_func, get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func, exclude_modules_globals=False)


def _install_dofn_specs() -> None:
    from apache_beam.transforms import userstate

    _beam_originals.setdefault("get_dofn_specs", userstate.get_dofn_specs)
    # Beam looks these up at call time: functions on their modules, the method on its class.
    userstate.get_dofn_specs = cached_dofn_specs


def _install_option_views() -> None:
    from apache_beam.options import pipeline_options

    _beam_originals.setdefault("view_as", pipeline_options.PipelineOptions.view_as)
    pipeline_options.PipelineOptions.view_as = cached_view


def _install_side_input_sizes() -> None:
    from apache_beam.runners.worker import statecache

    _beam_originals.setdefault("get_deep_size", statecache.get_deep_size)
    statecache.get_deep_size = side_input_size


# ---- beam-zlib-pickles ---------------------------------------------------------------------------

_BZ2_MAGIC = b"BZh"


def is_bz2(encoded) -> bool:
    head = encoded[:4].encode() if isinstance(encoded, str) else bytes(encoded[:4])
    return base64.b64decode(head).startswith(_BZ2_MAGIC)


def zlib_dumps(o, enable_trace=True, use_zlib=False) -> bytes:
    return _beam_originals["dumps"](o, enable_trace=enable_trace, use_zlib=True)


def any_loads(encoded, enable_trace=True, use_zlib=False):
    # Payloads written before the switch (bz2) still load.
    return _beam_originals["loads"](encoded, enable_trace=enable_trace, use_zlib=not is_bz2(encoded))


def _install_zlib_pickles() -> None:
    from apache_beam.internal import pickler

    _beam_originals.setdefault("dumps", pickler.dumps)
    _beam_originals.setdefault("loads", pickler.loads)
    pickler.dumps, pickler.loads = zlib_dumps, any_loads


def uninstall_beam() -> None:
    """Puts Beam's own functions back (tests compare with them)."""
    from apache_beam.internal import pickler
    from apache_beam.options import pipeline_options
    from apache_beam.runners.worker import statecache
    from apache_beam.transforms import userstate

    for owner, attribute in ((userstate, "get_dofn_specs"), (pipeline_options.PipelineOptions, "view_as"),
                             (statecache, "get_deep_size"), (pickler, "dumps"), (pickler, "loads")):
        if attribute in _beam_originals:
            setattr(owner, attribute, _beam_originals[attribute])
    _dofn_specs.clear()
    _active.difference_update({"beam-dofn-specs", "beam-option-views", "beam-side-input-sizes",
                               "beam-zlib-pickles"})


# ---- collector-settings, fast-exit ---------------------------------------------------------------

@contextlib.contextmanager
def collector_settings() -> Iterator[None]:
    """Around the pipeline's execution, once TFX, TensorFlow and Beam are imported and the pipeline
    is built: those objects live as long as the process, so no collection needs to walk them, and
    graph building allocates so fast that the default threshold collects thousands of times a run."""
    if not active("collector-settings"):
        yield
        return
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def exit_process(code: int) -> None:
    """Ends the command with `code`. With fast-exit: what the interpreter does first on exit
    (threading's exit hooks stop idle ThreadPoolExecutor workers, non-daemon threads are joined,
    exit handlers run, output is flushed), then `os._exit` instead of tearing down every object."""
    if not active("fast-exit"):
        sys.exit(code)
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


SPEEDUPS = [
    Speedup("lazy-cloud-clients", "apache-beam", "2.59.", _install_lazy_cloud_clients),
    Speedup("beam-dofn-specs", "apache-beam", "2.59.", _install_dofn_specs),
    Speedup("beam-option-views", "apache-beam", "2.59.", _install_option_views),
    Speedup("beam-side-input-sizes", "apache-beam", "2.59.", _install_side_input_sizes),
    Speedup("beam-zlib-pickles", "apache-beam", "2.59.", _install_zlib_pickles),
    Speedup("collector-settings", "python", "3.10."),
    Speedup("fast-exit", "python", "3.10."),
    Speedup("tft-tracked-resources", "tensorflow-transform", "1.16."),
    Speedup("tflite-loaded-model", "tensorflow", "2.16."),
    Speedup("review-tfma-protos", "tensorflow-model-analysis", "0.47."),
    Speedup("session-callable", "tensorflow", "2.16."),
]
