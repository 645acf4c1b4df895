"""The pipeline's ML Metadata store, from the config: SQLite under the output root, or MySQL/MariaDB
for a store shared by several machines (the password from the environment, never the config)."""
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from config import PipelineConfig


def sqlite_path(config: PipelineConfig) -> str:
    return os.path.abspath(os.path.join(config.output.root, "metadata.sqlite"))


def connection_config(config: PipelineConfig) -> metadata_store_pb2.ConnectionConfig:
    settings = config.metadata
    if settings.kind == "mysql":
        return metadata_store_pb2.ConnectionConfig(mysql=metadata_store_pb2.MySQLDatabaseConfig(
            host=settings.host, port=settings.port, database=settings.database, user=settings.user,
            password=os.environ.get(settings.password_env, "")))
    os.makedirs(os.path.dirname(sqlite_path(config)), exist_ok=True)
    return metadata_store_pb2.ConnectionConfig(sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(
        filename_uri=sqlite_path(config),
        connection_mode=metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE))


def open_store(config: PipelineConfig) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(connection_config(config))


def has_store(config: PipelineConfig) -> bool:
    """Whether there can be runs to read: False for a SQLite store that was never created (reading
    would create an empty one). A MySQL store is assumed to exist."""
    return config.metadata.kind != "sqlite" or os.path.isfile(sqlite_path(config))
