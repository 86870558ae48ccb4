"""What happens to jobs at the API's end of the queue: refused because their queue was full,
withdrawn because their client left, expired because no worker started them in time.

The queue's state (depth, oldest job, workers) is read from Redis at scrape time: see
queue_state.py.
"""

from __future__ import annotations

from prometheus_client import Counter

REJECTED = Counter(
    "velesio_queue_rejected_jobs",
    "Jobs refused because their queue already held QUEUE_CAP jobs (answered 503 with Retry-After).",
    ["queue", "model"],
)
CANCELLED = Counter(
    "velesio_queue_cancelled_jobs",
    "Jobs withdrawn, queued or running, because their client disconnected.",
    ["queue", "model"],
)
EXPIRED = Counter(
    "velesio_queue_expired_jobs",
    "Jobs that no worker started before their deadline (JOB_DEADLINE); their client got a 503.",
    ["queue", "model"],
)
