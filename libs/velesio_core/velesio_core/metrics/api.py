"""The API's HTTP traffic, labelled by dialect (llamacpp, openai, ollama, a1111) and route template.

Routes are Falcon's templates (``/v1/chat/completions``, ``/api/show``), never raw paths, and a
request that matched no route counts under ``other``: a scanner probing random paths must not
mint a time series per path.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: From a cached tokenize call (a millisecond) to a long generation (minutes).
DURATION_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
)  # fmt: skip
FIRST_TOKEN_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: The route label of a request that matched no route.
UNMATCHED_ROUTE = "other"

REQUESTS = Counter(
    "velesio_api_requests",
    "HTTP requests answered, by dialect, route, method and status code.",
    ["dialect", "route", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "velesio_api_request_duration_seconds",
    "From the request's arrival to its last byte (a stream's whole length when stream=true).",
    ["dialect", "route", "stream"],
    buckets=DURATION_BUCKETS_S,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "velesio_api_time_to_first_token_seconds",
    "From a streamed request's arrival to its first chunk of output: queue wait, prompt, one token.",
    ["dialect", "route"],
    buckets=FIRST_TOKEN_BUCKETS_S,
)
STREAMS_IN_FLIGHT = Gauge(
    "velesio_api_streams_in_flight",
    "Responses streaming to clients right now.",
    ["dialect"],
    multiprocess_mode="livesum",
)
AUTH_FAILURES = Counter(
    "velesio_api_auth_failures",
    "Requests refused for a missing or wrong API token.",
    ["dialect"],
)

#: Per API key, labelled by the key's name; a minted key counts under its parent's name, so the
#: label's values are the keys an admin created, never one per player session.
KEY_REQUESTS = Counter(
    "velesio_api_key_requests",
    "Jobs a key asked to queue, by key name and outcome (admitted, rate_limited, quota_exceeded, forbidden, revoked).",
    ["key", "outcome"],
)
KEY_TOKENS = Counter("velesio_api_key_tokens", "Tokens (prompt + generated) charged to a key.", ["key"])
KEY_IMAGES = Counter("velesio_api_key_images", "Images a key asked for and was admitted.", ["key"])
KEY_JOBS_IN_FLIGHT = Gauge(
    "velesio_api_key_jobs_in_flight",
    "Jobs of a key queued or running now (its concurrency leases held by this API).",
    ["key"],
    multiprocess_mode="livesum",
)
