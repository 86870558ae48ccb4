"""The one error type that crosses velesio, from a worker's backend to a client's dialect.

Each dialect renders a :class:`GatewayError` in its own shape (llama.cpp's
``{"error": {"code", "message", "type"}}``, OpenAI's, Ollama's, AUTOMATIC1111's); the kind
decides the HTTP status. Client mistakes are 4xx so that clients which retry every other error
(LLM for Unity retries up to 10 times) do not repeat a generation that can never succeed.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["ErrorKind", "GatewayError", "QueueFullError", "invalid_request", "not_supported", "unavailable"]


class ErrorKind(Enum):
    """An error category: its HTTP status and llama.cpp's ``type`` name for it."""

    INVALID_REQUEST = (400, "invalid_request_error")
    EXCEED_CONTEXT_SIZE = (400, "exceed_context_size_error")
    AUTHENTICATION = (401, "authentication_error")
    PERMISSION = (403, "permission_error")
    NOT_FOUND = (404, "not_found_error")
    METHOD_NOT_ALLOWED = (405, "invalid_request_error")
    REQUEST_TIMEOUT = (408, "timeout_error")
    CONFLICT = (409, "invalid_request_error")
    PAYLOAD_TOO_LARGE = (413, "invalid_request_error")
    UNSUPPORTED_MEDIA_TYPE = (415, "invalid_request_error")
    #: A key's rate limit (requests, tokens or concurrency): retry after the wait it is told.
    RATE_LIMITED = (429, "rate_limit_error")
    #: A key's daily quota is spent (OpenAI's type for it): retry after the day resets.
    QUOTA_EXCEEDED = (429, "insufficient_quota")
    SERVER = (500, "server_error")
    NOT_SUPPORTED = (501, "not_supported_error")
    UNAVAILABLE = (503, "unavailable_error")
    TIMEOUT = (504, "unavailable_error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def type_name(self) -> str:
        return self.value[1]

    @classmethod
    def from_llama_type(cls, type_name: str, status: int) -> ErrorKind:
        """The kind of an error reported by llama-server (its ``type`` wins over the status)."""
        for kind in cls:
            if kind.type_name == type_name and kind.status == status:
                return kind
        for kind in cls:
            if kind.type_name == type_name:
                return kind
        for kind in cls:
            if kind.status == status:
                return kind
        return cls.SERVER if status >= 500 else cls.INVALID_REQUEST


class GatewayError(Exception):
    """An error to show a client: a kind, a message safe to show, and optional extras."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        retry_after_s: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.extra = extra or {}

    @property
    def status(self) -> int:
        return self.kind.status

    def to_event_data(self) -> dict[str, Any]:
        """The body of an ``error`` event: llama.cpp's error object. Its own fields win over the
        extras: LlamaLib reads ``code`` as the int status, whatever code another dialect shows."""
        return {**self.extra, "code": self.status, "message": self.message, "type": self.kind.type_name}

    @classmethod
    def from_event_data(cls, data: dict[str, Any]) -> GatewayError:
        status = data.get("code")
        status = status if isinstance(status, int) else 500
        type_name = str(data.get("type") or "server_error")
        extra = {k: v for k, v in data.items() if k not in ("code", "message", "type")}
        return cls(ErrorKind.from_llama_type(type_name, status), str(data.get("message") or "error"), extra=extra)

    def __repr__(self) -> str:
        return f"GatewayError({self.kind.name}, {self.message!r})"


class QueueFullError(GatewayError):
    """The queue already holds as many waiting jobs as its cap allows: a 503 with a retry hint,
    a type of its own so that a Python caller (velesio_core.client) can tell it from an outage."""

    def __init__(self, cap: int, *, retry_after_s: int, per_key: bool = False) -> None:
        waiting = f"{cap} jobs of this API key are" if per_key else f"{cap} jobs are"
        super().__init__(
            ErrorKind.UNAVAILABLE,
            f"the server is busy: {waiting} already waiting; retry shortly",
            retry_after_s=retry_after_s,
        )


def invalid_request(message: str) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_REQUEST, message)


def not_supported(message: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_SUPPORTED, message)


def unavailable(message: str, *, retry_after_s: int | None = None) -> GatewayError:
    return GatewayError(ErrorKind.UNAVAILABLE, message, retry_after_s=retry_after_s)
