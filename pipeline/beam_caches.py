"""Caches for answers Beam 2.59 recomputes on every call, installed for local runs.

Measured on one run of the taxi pipeline (54 s without them):
- `userstate.get_dofn_specs(dofn)`: 4,201 calls, 6.6 s. Each wraps every method of the DoFn and
  takes its `inspect.signature`, to find state and timer parameters. The answer depends only on
  the DoFn's methods, so it is cached by class and by any bound methods set on the instance (as
  `beam.Map(obj.method)` does). Beam's own checks (duplicate parameters) still run on a miss.
- `PipelineOptions.view_as(cls)`: 2,311 calls, 2.8 s. Each builds an argparse parser for `cls`
  and parses the flags again. Every view of an options object shares its values (the
  `_all_options` dict), and a view only adds defaults for keys not yet in it, so the first
  view of each class serves every later request on the same options object.
- `statecache.get_deep_size(value)`, which weighs each side input its state cache keeps:
  101 calls, 1.0 s. objsize first collects the ids of every loaded module's globals dict, to
  leave them out (about 8,000 modules here). Beam's own filter already stops the walk at
  modules, classes and functions, the only ways a value reaches those dicts, so the walk is
  the same without that set.
"""
import types
import weakref

import objsize
from apache_beam.options import pipeline_options
from apache_beam.runners.worker import statecache
from apache_beam.transforms import userstate

_compute_dofn_specs = userstate.get_dofn_specs
_compute_view = pipeline_options.PipelineOptions.view_as
_compute_deep_size = statecache.get_deep_size
_dofn_specs = {}
_views = weakref.WeakKeyDictionary()


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


def get_dofn_specs(dofn):
    key = _dofn_key(dofn)
    if key is None:
        return _compute_dofn_specs(dofn)
    specs = _dofn_specs.get(key)
    if specs is None:
        specs = _dofn_specs[key] = _compute_dofn_specs(dofn)
    state_specs, timer_specs = specs
    # Callers get their own sets, as from Beam's function.
    return set(state_specs), set(timer_specs)


def view_as(options, cls):
    views = _views.setdefault(options, {})
    view = views.get(cls)
    if view is None:
        view = views[cls] = _compute_view(options, cls)
    return view


def get_deep_size(*objs) -> int:
    return objsize.get_deep_size(
        *objs, get_size_func=statecache._size_func, get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func, exclude_modules_globals=False)


def install() -> None:
    """Beam looks these up at call time: functions on their modules, the method on its class."""
    userstate.get_dofn_specs = get_dofn_specs
    pipeline_options.PipelineOptions.view_as = view_as
    statecache.get_deep_size = get_deep_size
