"""Custom backends: serve a model velesio does not run yet from velesio's workers, through every
dialect that fits it.

Write a class with the methods of :class:`TextBackend` and of its capabilities
(:class:`Generates`, :class:`Embeds`, :class:`Tokenizes`), name it in your package's
``velesio.backends`` entry points, and start a worker with ``RUN_BACKEND=<entry point name>``
(or ``RUN_BACKEND=package.module:Class``). The docs' "Writing a backend" walks through one.
"""

from .protocol import Capability, Embeds, Generates, GenerationRequest, JobContext, ModelInfo, TextBackend, Tokenizes
from .serving import ENTRY_POINT_GROUP, load_backend, render_chat

__all__ = [
    "ENTRY_POINT_GROUP",
    "Capability",
    "Embeds",
    "Generates",
    "GenerationRequest",
    "JobContext",
    "ModelInfo",
    "TextBackend",
    "Tokenizes",
    "load_backend",
    "render_chat",
]
