"""The images' health check command: is this container's service alive?

    healthcheck.py api      the API answers GET /health on its port, with 200 (a worker serves a
                            model) or with 503 in llama.cpp's error shape (the API is up, no worker
                            is yet: that is the workers' health, and restarting the API would not
                            help). Anything else, or no answer within 3 s, is unhealthy.
    healthcheck.py worker   a worker of this container (same hostname) has a card in Redis
                            refreshed within the registry's staleness limit.

Exit status 0 is healthy, 1 unhealthy, as Docker's HEALTHCHECK expects. Settings come from the
same environment as the service's.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request


def api_alive() -> bool:
    from velesio_core.settings import Settings

    url = f"http://127.0.0.1:{Settings.from_env().api_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read())
        except ValueError:
            return False
        return error.code == 503 and isinstance(body, dict) and "message" in body.get("error", {})
    except OSError:
        return False


def worker_alive() -> bool:
    from redis.exceptions import RedisError

    from velesio_core.queue.keys import WORKERS_KEY
    from velesio_core.redis_clients import sync_client
    from velesio_core.registry import STALE_AFTER_S, WorkerCard
    from velesio_core.settings import Settings

    try:
        cards = sync_client(Settings.from_env(), socket_timeout=3).hvals(WORKERS_KEY)
    except RedisError:
        return False
    host, now = socket.gethostname(), time.time()
    return any(
        card.host == host and now - card.heartbeat_at < STALE_AFTER_S for card in map(WorkerCard.from_json, cards)
    )


def main() -> int:
    checks = {"api": api_alive, "worker": worker_alive}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        print(f"usage: {sys.argv[0]} {'|'.join(checks)}", file=sys.stderr)
        return 2
    return 0 if checks[sys.argv[1]]() else 1


if __name__ == "__main__":
    sys.exit(main())
