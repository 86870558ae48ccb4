"""Send jobs to velesio from Python, straight onto its queue: :class:`Client` (blocking) and
:class:`AsyncClient` (asyncio), their typed results and stream events, and their exceptions."""

from .admission import Admission, Ticket, Unrestricted
from .aio import AsyncClient, AsyncStream
from .errors import (
    BackendError,
    InvalidRequest,
    ModelNotFound,
    NotSupported,
    QueueFull,
    QuotaExceeded,
    RateLimited,
    ScopeDenied,
    Timeout,
    Unauthenticated,
    Unavailable,
    VelesioError,
)
from .keys import KeyAdmission
from .sync import Client, Stream
from .types import ChatCompletion, Completion, Done, Embeddings, Images, Progress, Started, StreamEvent, Token, Tokens

__all__ = [
    "Admission",
    "AsyncClient",
    "AsyncStream",
    "BackendError",
    "ChatCompletion",
    "Client",
    "Completion",
    "Done",
    "Embeddings",
    "Images",
    "InvalidRequest",
    "KeyAdmission",
    "ModelNotFound",
    "NotSupported",
    "Progress",
    "QueueFull",
    "QuotaExceeded",
    "RateLimited",
    "ScopeDenied",
    "Started",
    "Stream",
    "StreamEvent",
    "Ticket",
    "Timeout",
    "Token",
    "Tokens",
    "Unauthenticated",
    "Unavailable",
    "Unrestricted",
    "VelesioError",
]
