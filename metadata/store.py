"""The pipeline's ML Metadata store, from the config: SQLite under the output root, or MySQL/MariaDB
for a store shared by several machines. The password comes from a file or the environment, never
from the config itself, and never into a compiled Kubeflow spec (Kubeflow keeps its own store)."""
import contextlib
import os
import socket
import sys

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from config import PipelineConfig
from metadata.errors import MetadataError


def sqlite_path(config: PipelineConfig) -> str:
    return os.path.abspath(os.path.join(config.output.root, "metadata.sqlite"))


def mysql_password(config: PipelineConfig) -> str:
    """metadata.password_file's contents (without the trailing newline), else $<metadata.password_env>."""
    settings = config.metadata
    if settings.password_file:
        try:
            with open(settings.password_file) as handle:
                return handle.read().rstrip("\r\n")
        except OSError as error:
            raise MetadataError(f"metadata.password_file {settings.password_file}: {error.strerror}; "
                                "check the path and that this user can read it") from None
    return os.environ.get(settings.password_env, "")


def connection_config(config: PipelineConfig) -> metadata_store_pb2.ConnectionConfig:
    settings = config.metadata
    if settings.kind == "mysql":
        return metadata_store_pb2.ConnectionConfig(mysql=metadata_store_pb2.MySQLDatabaseConfig(
            host=settings.host, port=settings.port, database=settings.database, user=settings.user,
            password=mysql_password(config)))
    os.makedirs(os.path.dirname(sqlite_path(config)), exist_ok=True)
    return metadata_store_pb2.ConnectionConfig(sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(
        filename_uri=sqlite_path(config),
        connection_mode=metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE))


def check_store(config: PipelineConfig, timeout: float = 5) -> None:
    """Before a run writes anything: the MySQL server answers and takes the credentials. One
    MetadataError line otherwise (MLMD's own errors come from deep inside the first component)."""
    settings = config.metadata
    if settings.kind != "mysql":
        return
    where = f"MySQL server {settings.host}:{settings.port}"
    try:
        socket.create_connection((settings.host, settings.port), timeout=timeout).close()
    except OSError as error:
        raise MetadataError(f"cannot reach the {where} ({error.strerror or error}); check metadata.host and "
                            "metadata.port, and that the server runs") from None
    try:
        with _native_stderr_discarded():  # MLMD's C++ logs a refused login to file descriptor 2
            metadata_store.MetadataStore(connection_config(config))
    except Exception as error:  # MLMD raises its own status errors for refused logins and missing grants
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0].split(", error:")[0].rstrip(":, ")
        source = settings.password_file or "$" + settings.password_env
        raise MetadataError(f"the {where} refused database '{settings.database}' for user '{settings.user}' "
                            f"({detail}); check the password ({source}) and the user's grants") from None


@contextlib.contextmanager
def _native_stderr_discarded():
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def open_store(config: PipelineConfig) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(connection_config(config))


def has_store(config: PipelineConfig) -> bool:
    """Whether there can be runs to read: False for a SQLite store that was never created (reading
    would create an empty one). A MySQL store is assumed to exist."""
    return config.metadata.kind != "sqlite" or os.path.isfile(sqlite_path(config))
