"""TFX's Pusher with an executor that publishes each version whole (serving/layout.py) and keeps TF
Serving's config files next to it up to date."""
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import executor


class AtomicPusher(Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
