"""The one error of the metadata room, importable without ml_metadata (the CLI catches it)."""


class MetadataError(RuntimeError):
    """The metadata store cannot be used; the message names the store and what to check."""
