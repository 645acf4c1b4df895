"""Kubeflow Pipelines' base artifact type, `system.Artifact`, for TFX's entrypoint in a KFP pod.

From KFP 2.5 on the backend gives every task one more output, `executor-logs` of type
`system.Artifact` (the driver's --publish_logs, on by default), into which the launcher copies the
pod's log. TFX 1.16's entrypoint imports the type of every output by its schema title before it
runs the executor, so without this package each task fails with "Could not import
system.Artifact". The executors never look at that output; the launcher writes it."""
from tfx import types


class Artifact(types.Artifact):
    TYPE_NAME = "system.Artifact"
