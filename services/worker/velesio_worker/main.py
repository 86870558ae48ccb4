"""``velesio-worker``: take jobs from Redis and run them on llama-server (or, with API=false,
serve llama.cpp's API alone on LLM_PORT, with no Redis at all)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid

import dramatiq

from velesio_core.logs import configure_logging
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.settings import Settings, SettingsError, exit_with, load_or_exit

from .actors import register_actors
from .runtime import WorkerRuntime

log = logging.getLogger("velesio.worker")

#: Dramatiq threads beyond the generation slots, so auxiliary jobs (tokenize, embeddings, ...)
#: never wait behind long generations.
AUX_THREADS = 2
#: Seconds running jobs get to finish when the worker is asked to stop.
SHUTDOWN_GRACE_S = 10.0
#: Seconds the consumers then get to hand their acknowledgements to Redis.
ACK_GRACE_S = 5.0


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def run_queue_worker(settings: Settings) -> None:
    broker = WakingRedisBroker(url=settings.redis_url, middleware=[])
    try:
        runtime = WorkerRuntime.start(settings, worker_id(), broker)
    except SettingsError as error:
        exit_with(error)

    register_actors(broker, runtime.card.queues, runtime.executor, runtime.sinks)
    worker = dramatiq.Worker(
        broker,
        queues=set(runtime.card.queues),
        worker_threads=settings.llama_slots + AUX_THREADS,
    )
    # Take no more generation jobs than there are slots, leaving the rest for other workers.
    worker.queue_prefetch = settings.llama_slots
    worker.start()
    log.info("worker %s is taking jobs (%d slots)", runtime.card.worker_id, settings.llama_slots)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()

    log.info("stopping: running jobs get %g s to finish", SHUTDOWN_GRACE_S)
    stopper = threading.Thread(
        target=worker.stop, kwargs={"timeout": int((SHUTDOWN_GRACE_S + 10) * 1000)}, name="stopper", daemon=True
    )
    stopper.start()
    runtime.executor.drain(SHUTDOWN_GRACE_S)
    # Dramatiq retries acks until Redis answers; without Redis the stop would wait for ever.
    stopper.join(timeout=ACK_GRACE_S)
    if stopper.is_alive():
        log.warning("Redis did not take the last acknowledgements; those jobs go back on the queue when it returns")
    runtime.close()
    broker.close()
    log.info("stopped")


def main() -> None:
    configure_logging()
    settings = load_or_exit()
    if settings.llm_backend is None:
        exit_with(SettingsError("RUN_LLAMACPP", "no LLM backend is enabled", "set RUN_LLAMACPP or RUN_OLLAMA to true"))
    if settings.api:
        run_queue_worker(settings)
    else:
        from .standalone import serve

        serve(settings)


if __name__ == "__main__":
    main()
