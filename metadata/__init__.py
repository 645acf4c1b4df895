"""ML Metadata: where a pipeline's store is, and what its runs recorded. Only ml_metadata is imported
here (no TFX), so every command that reads runs starts fast."""
