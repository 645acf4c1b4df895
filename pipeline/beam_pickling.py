"""zlib instead of bz2 for Beam's pickled transforms, when Beam's workers run in this process.

Beam 2.59 pickles every DoFn and compresses it with bz2 at level 9, to keep what it ships to
remote workers small. On one taxi run that was 3,139 compressions and 3,930 decompressions,
1.0 s of the run. The in-memory DirectRunner unpickles them in the same process, where size
matters little, so `install` switches Beam's writer to its own zlib option. The reader tells
the two formats apart, so payloads written before `install` still load. Multi-process workers
start fresh interpreters that read bz2 only; `run_local` installs this only for in-memory runs.
"""
import base64

from apache_beam.internal import pickler

_dumps = pickler.dumps
_loads = pickler.loads
_BZ2_MAGIC = b"BZh"


def is_bz2(encoded) -> bool:
    head = encoded[:4].encode() if isinstance(encoded, str) else bytes(encoded[:4])
    return base64.b64decode(head).startswith(_BZ2_MAGIC)


def dumps(o, enable_trace=True, use_zlib=False) -> bytes:
    return _dumps(o, enable_trace=enable_trace, use_zlib=True)


def loads(encoded, enable_trace=True, use_zlib=False):
    return _loads(encoded, enable_trace=enable_trace, use_zlib=not is_bz2(encoded))


def install() -> None:
    """Beam's modules call `pickler.dumps` and `pickler.loads` through the module."""
    pickler.dumps = dumps
    pickler.loads = loads
