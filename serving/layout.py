"""The serving and edge directories: their layout, versions, publishing and the release lock, on
local disk and on any filesystem TensorFlow reaches by URI (gs://, s3:// with its plugin, ram://).

  <serving dir>/                  mounted at /models in a TF Serving container
    <model>/<version>/            a SavedModel; saved_model.pb is written last
    models.config                 ModelServerConfig, container paths (/models/<model>)
    models.local.config           the same with the serving directory's own path, for `tfxline serve`
    monitoring.config             MonitoringConfig
    batching_parameters.txt       BatchingParameters
    release_history.json          label changes and the stable versions a rollback walks back to
    .release.lock                 held while a push or `tfxline release` changes the directory
  <edge dir>/<model>/<version>/   model.tflite, model_quant.tflite, manifest.json (written last)

Versions are Unix seconds, as TFX's Pusher numbers them, and always above the newest existing
one. On local disk a version is written into a hidden sibling and renamed into place, so a
watcher sees all of it or nothing. Object stores cannot rename a directory, so there a version
is written where it stays and its marker file (saved_model.pb, manifest.json) comes last.

Plain paths use os calls; only a path with a scheme (`gs://...`) imports TensorFlow's gfile, so
`tfxline release` and the edge runtime load no TensorFlow on local disk. `_LocalFiles` and
`_TensorFlowFiles` are that seam; nothing outside it looks at the scheme.
"""
import contextlib
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from typing import Callable, Dict, Iterator, List, Optional, Tuple

MODELS_CONFIG = "models.config"
LOCAL_MODELS_CONFIG = "models.local.config"
MONITORING_CONFIG = "monitoring.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
RELEASE_HISTORY = "release_history.json"
RELEASE_LOCK = ".release.lock"
CONTAINER_MODELS_DIR = "/models"
# TF Serving loads a version from either graph file; TFX's Pusher copies it last.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")

MANIFEST = "manifest.json"
# In the serving directory: each pushed version's training-data profile (the drift baseline).
TRAINING_PROFILES = ".training-profiles"
PROFILE_PROPERTIES = "profile.json"
FLOAT_MODEL = "model.tflite"
QUANTIZED_MODEL = "model_quant.tflite"
EDGE_VARIANTS = {"float": FLOAT_MODEL, "quantized": QUANTIZED_MODEL}
# Fields every manifest has: the writer (TFLiteExport) builds them, the reader checks them.
MANIFEST_FIELDS = ("model_name", "version", "signature", "inputs", "outputs", "metrics", "files")

_STAGING_PREFIX = ".incoming-"
_CHUNK = 1 << 20
log = logging.getLogger("tfxline.layout")


# ---- The filesystem seam ------------------------------------------------------------------------

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class _LocalFiles:
    """A POSIX disk: rename is atomic, so versions are staged and renamed into place."""
    renames_directories = True

    exists = staticmethod(os.path.exists)
    isdir = staticmethod(os.path.isdir)
    listdir = staticmethod(os.listdir)
    remove = staticmethod(os.remove)
    walk = staticmethod(os.walk)
    absolute = staticmethod(os.path.abspath)

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)

    @staticmethod
    def read(path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    @staticmethod
    def chunks(path: str) -> Iterator[bytes]:
        with open(path, "rb") as handle:
            yield from iter(lambda: handle.read(_CHUNK), b"")

    @staticmethod
    def write_atomically(path: str, data: bytes) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the file from a non-root server
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
            raise

    @staticmethod
    def copy(source: str, target: str) -> None:
        shutil.copy2(source, target)

    @staticmethod
    def rename_directory(source: str, target: str) -> None:
        os.rename(source, target)

    @staticmethod
    def remove_tree(path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, path: str):
        import fcntl  # POSIX only; the edge runtime, which may run on Windows, never takes this lock

        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released by the kernel if the process dies
            yield


class _TensorFlowFiles:
    """A URI, through tf.io.gfile. Object stores have no directory rename (GCS and S3 copy every
    object), so a version is written in place with its marker file last; single files are written
    under a temporary name and renamed, which on an object store is a copy of one object that
    appears whole (and sidesteps ram://, which appends to an existing file instead of replacing it)."""
    renames_directories = False

    def __init__(self, gfile, errors):
        self._gfile, self._errors = gfile, errors

    @contextlib.contextmanager
    def _as_os_errors(self, path: str):
        # Callers handle OSError, as for local files; gfile raises TensorFlow's own errors.
        try:
            yield
        except self._errors.NotFoundError as error:
            raise FileNotFoundError(f"{path}: {error.message or 'not found'}") from None
        except self._errors.OpError as error:
            raise OSError(f"{path}: {error.message}") from None

    def exists(self, path):
        with self._as_os_errors(path):
            return self._gfile.exists(path)

    def isdir(self, path):
        with self._as_os_errors(path):
            return self._gfile.isdir(path)

    def listdir(self, path):
        with self._as_os_errors(path):
            return [name.rstrip("/") for name in self._gfile.listdir(path)]

    def makedirs(self, path):
        with self._as_os_errors(path):
            self._gfile.makedirs(path)

    def remove(self, path):
        with self._as_os_errors(path):
            self._gfile.remove(path)

    def walk(self, path):
        with self._as_os_errors(path):
            yield from self._gfile.walk(path)

    @staticmethod
    def absolute(path):
        return path

    def read(self, path):
        with self._as_os_errors(path), self._gfile.GFile(path, "rb") as handle:
            return handle.read()

    def chunks(self, path):
        with self._as_os_errors(path), self._gfile.GFile(path, "rb") as handle:
            yield from iter(lambda: handle.read(_CHUNK), b"")

    def write_atomically(self, path, data):
        temporary = join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}")
        with self._as_os_errors(path):
            self._gfile.makedirs(os.path.dirname(path))
            try:
                with self._gfile.GFile(temporary, "wb") as handle:
                    handle.write(data)
                self._gfile.rename(temporary, path, overwrite=True)
            except BaseException:
                with contextlib.suppress(self._errors.OpError):
                    self._gfile.remove(temporary)
                raise

    def copy(self, source, target):
        with self._as_os_errors(target):
            self._gfile.copy(source, target, overwrite=True)

    @contextlib.contextmanager
    def lock(self, path):
        with _ObjectLock(self, path):
            yield


_LOCAL = _LocalFiles()
_uri_files: Optional[_TensorFlowFiles] = None


def is_uri(path: str) -> bool:
    return _SCHEME.match(path) is not None


def _files(path: str):
    """The filesystem of `path`: os calls for a plain path, TensorFlow's gfile for a URI."""
    global _uri_files
    match = _SCHEME.match(path)
    if match is None:
        return _LOCAL
    scheme = match.group(1)
    if _uri_files is None:
        try:
            import tensorflow as tf
        except ImportError:
            raise OSError(f"{path}: a {scheme}:// path needs TensorFlow's filesystems, which are not installed "
                          "here; copy the directory to local disk (e.g. gsutil rsync) and pass its local path"
                          ) from None
        _uri_files = _TensorFlowFiles(tf.io.gfile, tf.errors)
    if scheme not in _uri_files._gfile.get_registered_schemes():
        # s3://, hdfs://, az:// and others come from tensorflow-io, which registers them on import.
        with contextlib.suppress(ImportError):
            importlib.import_module("tensorflow_io")
        if scheme not in _uri_files._gfile.get_registered_schemes():
            raise OSError(f"{path}: no filesystem for {scheme}:// is registered with TensorFlow; install its plugin "
                          f"(tensorflow-io for s3://, hdfs://, az://) or use a local path")
    return _uri_files


def join(base: str, *names: str) -> str:
    return os.path.join(base, *names)


def split_base(base_directory: str) -> Tuple[str, str]:
    """TF Serving's base path `<serving dir>/<model>` -> (serving dir, model name)."""
    serving_dir, model_name = os.path.split(base_directory.rstrip("/"))
    return serving_dir or ".", model_name


def absolute(path: str) -> str:
    """A local path made absolute; a URI as it is."""
    return _files(path).absolute(path)


def exists(path: str) -> bool:
    return _files(path).exists(path)


def isdir(path: str) -> bool:
    return _files(path).isdir(path)


def makedirs(path: str) -> None:
    _files(path).makedirs(path)


def read_bytes(path: str) -> bytes:
    return _files(path).read(path)


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_bytes(path: str, data: bytes) -> None:
    """Replaces `path` whole: a reader sees the old content or the new one, never a part."""
    _files(path).write_atomically(path, data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, content) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# ---- Versions -----------------------------------------------------------------------------------

def versions(base: str, marker: Tuple[str, ...] = ()) -> List[int]:
    """Children of `base` whose names parse as integers (TF Serving's rule: `.incoming-5` and
    `5.tmp` are not versions); with `marker`, only those holding one of those files."""
    files = _files(base)
    if not files.isdir(base):
        return []
    numbers = []
    for name in files.listdir(base):
        try:
            number = int(name)
        except ValueError:
            continue
        path = join(base, name)
        if number >= 0 and files.isdir(path) and (not marker or any(files.exists(join(path, m)) for m in marker)):
            numbers.append(number)
    return sorted(set(numbers))


def saved_model_versions(base: str) -> List[int]:
    """Versions whose SavedModel is complete (its graph file is there)."""
    return versions(base, SAVED_MODEL_FILES)


def edge_versions(base: str) -> List[int]:
    """Versions with a manifest: the edge runtime ignores any other."""
    return versions(base, (MANIFEST,))


def next_version(base: str, now: float) -> int:
    """Unix seconds, above every version directory, complete or not, so none is ever reused."""
    existing = versions(base)
    return max(int(now), existing[-1] + 1 if existing else 0)


# ---- Publishing ---------------------------------------------------------------------------------

def _publish_directory(base: str, version: str, write: Callable[[str], None], last: Callable[[str], None]) -> str:
    """`write(directory)` writes everything but the marker, `last(directory)` the marker. Local
    disk: both into a hidden sibling, renamed to `<version>` at once. Elsewhere: in place."""
    files = _files(base)
    target = join(base, version)
    files.makedirs(base)
    if not files.renames_directories:
        files.makedirs(target)
        write(target)
        last(target)
        return target
    staging = join(base, f"{_STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    try:
        files.makedirs(staging)
        write(staging)
        last(staging)
        files.rename_directory(staging, target)
    finally:
        files.remove_tree(staging)
    return target


def _copy_file(source: str, target: str) -> None:
    """Between any two filesystems: gfile copies whenever either side is a URI."""
    _files(target if is_uri(target) else source).copy(source, target)


def _copy_tree(source: str, target: str, skip: Tuple[str, ...] = ()) -> None:
    """Copies every file under `source` into `target`, except the top-level files in `skip`."""
    target_files = _files(target)
    for root, _, names in _files(source).walk(source):
        destination = join(target, root[len(source):].strip("/"))
        target_files.makedirs(destination)
        for name in names:
            if not (root == source and name in skip):
                _copy_file(join(root, name), join(destination, name))


def _same_files(source: str, copy: str) -> bool:
    """Whether every file under `source` is in `copy` with the same content."""
    source_files, copy_files = _files(source), _files(copy)
    for root, _, names in source_files.walk(source):
        relative = root[len(source):].strip("/")
        for name in names:
            theirs = join(copy, relative, name)
            if not copy_files.exists(theirs) or _digest(source_files, join(root, name)) != _digest(copy_files, theirs):
                return False
    return True


def _digest(files, path: str) -> str:
    digest = hashlib.sha256()
    for chunk in files.chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def training_profile_dir(serving_dir: str, model_name: str, version: int) -> str:
    """Where the profile of a pushed version's training data is kept: in the serving directory, out of
    the model's own directory (which holds its versions only, as TF Serving expects)."""
    return join(serving_dir, TRAINING_PROFILES, model_name, str(version))


def publish_training_profile(profile_dir: str, serving_dir: str, model_name: str, version: int,
                             properties: dict) -> str:
    """Copies a DataProfile's files to `training_profile_dir`, its properties file last (a reader
    looks only at profiles that have it)."""
    target = training_profile_dir(serving_dir, model_name, version)
    _copy_tree(profile_dir, target)
    write_json(join(target, PROFILE_PROPERTIES), properties)
    return target


def read_training_profile(serving_dir: str, model_name: str, version: int) -> Optional[Tuple[str, dict]]:
    """(directory, properties) of a version's training profile, or None when it has none."""
    directory = training_profile_dir(serving_dir, model_name, version)
    marker = join(directory, PROFILE_PROPERTIES)
    if not exists(marker):
        return None
    return directory, json.loads(read_text(marker))


def publish_saved_model(model_dir: str, base_directory: str, now: float) -> str:
    """Publishes the SavedModel in `model_dir` as the next version under `base_directory` (TF
    Serving's base path) and returns that version. The graph file goes last, as TFX's Pusher
    copies it. A model equal to the newest version is not published again: that version is
    returned. Holds the serving directory's release lock."""
    base_directory = base_directory.rstrip("/")
    with release_lock(split_base(base_directory)[0]):
        complete = saved_model_versions(base_directory)
        if complete and _same_files(model_dir, join(base_directory, str(complete[-1]))):
            return str(complete[-1])
        version = str(next_version(base_directory, now))
        source_files = _files(model_dir)
        graph_files = [name for name in SAVED_MODEL_FILES if source_files.exists(join(model_dir, name))]
        if not graph_files:
            raise FileNotFoundError(f"{model_dir}: no saved_model.pb (or .pbtxt); not a SavedModel directory")

        def graph_last(directory):
            for name in graph_files:
                _copy_file(join(model_dir, name), join(directory, name))

        _publish_directory(base_directory, version, lambda directory: _copy_tree(model_dir, directory, graph_files),
                           graph_last)
        return version


# ---- The edge manifest --------------------------------------------------------------------------

def build_manifest(version: str, model_name: str, raw_inputs: list, output_key: str, files: Dict[str, bytes],
                   metrics: dict, signature: str) -> dict:
    """What the edge runtime reads: the inputs it converts rows to, the output, the signature it
    calls, the parity numbers, and each file's sha256 it checks before loading."""
    return {
        "model_name": model_name,
        "version": int(version),
        "signature": signature,
        "inputs": [{**item, "shape": [-1]} for item in raw_inputs],
        "outputs": [output_key],
        "metrics": metrics,
        "files": {name: {"sha256": sha256(content), "bytes": len(content)} for name, content in files.items()},
    }


def read_manifest(version_dir: str) -> dict:
    """The manifest of one edge version; ValueError (or OSError) says what is wrong with it."""
    path = join(version_dir, MANIFEST)
    try:
        manifest = json.loads(read_bytes(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    missing = [name for name in MANIFEST_FIELDS if not isinstance(manifest, dict) or name not in manifest]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return manifest


def publish_edge_version(base_directory: str, version: str, files: Dict[str, bytes], manifest: dict) -> str:
    """Publishes `files` and the manifest as `<base_directory>/<version>`, the manifest last. A
    version that already has its manifest is left as it is (a re-run of the same push)."""
    target = join(base_directory, str(version))
    if _files(base_directory).exists(join(target, MANIFEST)):
        return target

    def write(directory):
        for name, content in files.items():
            write_bytes(join(directory, name), content)

    try:
        return _publish_directory(base_directory, str(version), write,
                                  lambda directory: write_json(join(directory, MANIFEST), manifest))
    except OSError:
        # Another process published this version first (its rename won); that one stays.
        if _files(base_directory).exists(join(target, MANIFEST)):
            return target
        raise


# ---- The release lock ---------------------------------------------------------------------------

_held = threading.local()
LOCK_EXPIRY_SECONDS = 600.0
LOCK_SETTLE_SECONDS = 1.0
LOCK_POLL_SECONDS = 0.5


class ReleaseLockTimeout(OSError):
    """Another writer held the serving directory's lock for longer than we waited."""


@contextlib.contextmanager
def release_lock(serving_dir: str) -> Iterator[None]:
    """Serializes pushes and `tfxline release` on one serving directory, so two writers cannot
    choose the same version or lose each other's label change. Local disk: flock on
    `.release.lock` (released by the kernel if the holder dies). Object stores: an advisory lock
    object (`_ObjectLock`). Re-entrant within a thread."""
    key = absolute(serving_dir)
    held = getattr(_held, "paths", None)
    if held is None:
        held = _held.paths = set()
    if key in held:
        yield
        return
    files = _files(serving_dir)
    files.makedirs(serving_dir)
    with files.lock(join(serving_dir, RELEASE_LOCK)):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


class _ObjectLock:
    """Best effort where there is no flock and no conditional write through gfile: the lock is a
    JSON object {owner, expires}. To take it: wait until it is absent or expired, write ours, wait
    LOCK_SETTLE_SECONDS, read it back; ours means taken, another owner's means we lost the race
    and wait again. Two writers both believe they hold it only if one of them took longer than the
    settle time between reading "free" and writing. A holder that dies leaves it until it expires;
    a holder that works past the expiry can be overlapped, which is logged when it releases."""

    def __init__(self, files: _TensorFlowFiles, path: str):
        self._files, self._path = files, path
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def _current(self) -> Optional[dict]:
        try:
            content = json.loads(self._files.read(self._path))
            return content if isinstance(content, dict) and "owner" in content else None
        except (OSError, ValueError):
            return None

    def __enter__(self):
        deadline = time.monotonic() + LOCK_EXPIRY_SECONDS + LOCK_SETTLE_SECONDS
        while True:
            current = self._current()
            if current is None or float(current.get("expires", 0)) < time.time():
                self._files.write_atomically(self._path, json.dumps({
                    "owner": self._owner, "expires": time.time() + LOCK_EXPIRY_SECONDS}).encode())
                time.sleep(LOCK_SETTLE_SECONDS)
                current = self._current()
                if current is not None and current["owner"] == self._owner:
                    return self
            if time.monotonic() > deadline:
                raise ReleaseLockTimeout(
                    f"{self._path} is held by {current['owner'] if current else 'another writer'}; wait for it to "
                    "finish, or delete the lock object if that writer is gone")
            time.sleep(LOCK_POLL_SECONDS)

    def __exit__(self, *exc_info):
        current = self._current()
        if current is not None and current["owner"] == self._owner:
            with contextlib.suppress(OSError):
                self._files.remove(self._path)
        else:
            log.warning("the release lock %s expired while %s held it; another writer may have overlapped",
                        self._path, self._owner)
