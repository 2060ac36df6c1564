"""``ldnet serve``: top-down pose estimation as an HTTP service (FastAPI + uvicorn), with
micro-batching of concurrent requests, bounded queues, an optional API key and a page."""

from .app import ServeOptions, create_app
from .batching import MicroBatcher, QueueFull
from .errors import ServeError
from .service import PoseJob, PoseService

__all__ = [
    "MicroBatcher",
    "PoseJob",
    "PoseService",
    "QueueFull",
    "ServeError",
    "ServeOptions",
    "create_app",
]
