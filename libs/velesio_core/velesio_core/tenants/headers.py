"""OpenAI's rate-limit headers, which its SDKs and many clients read."""

from __future__ import annotations

from dataclasses import dataclass

#: The headers :meth:`RateSnapshot.headers` may set, in OpenAI's names.
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def duration(ms: int) -> str:
    """A wait as OpenAI writes it (Go's durations): ``20ms``, ``1.5s``, ``6m0s``."""
    ms = max(int(ms), 0)
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(ms, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if minutes < 60:
        return f"{minutes}m{seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{seconds}s"


@dataclass(frozen=True)
class RateSnapshot:
    """The tightest request and token limits of a key and its parent (None: no such limit)."""

    request_limit: int | None = None
    requests_remaining: int = 0
    requests_reset_ms: int = 0
    token_limit: int | None = None
    tokens_remaining: int = 0
    tokens_reset_ms: int = 0

    @classmethod
    def from_script(cls, reply: list[int]) -> RateSnapshot:
        """From admit.lua's answer: {1, limit, remaining, reset, token limit, remaining, reset}."""
        requests, tokens = reply[1] >= 0, reply[4] >= 0
        return cls(
            request_limit=int(reply[1]) if requests else None,
            requests_remaining=int(reply[2]) if requests else 0,
            requests_reset_ms=int(reply[3]) if requests else 0,
            token_limit=int(reply[4]) if tokens else None,
            tokens_remaining=int(reply[5]) if tokens else 0,
            tokens_reset_ms=int(reply[6]) if tokens else 0,
        )

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.request_limit is not None:
            headers["x-ratelimit-limit-requests"] = str(self.request_limit)
            headers["x-ratelimit-remaining-requests"] = str(self.requests_remaining)
            headers["x-ratelimit-reset-requests"] = duration(self.requests_reset_ms)
        if self.token_limit is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.token_limit)
            headers["x-ratelimit-remaining-tokens"] = str(self.tokens_remaining)
            headers["x-ratelimit-reset-tokens"] = duration(self.tokens_reset_ms)
        return headers
