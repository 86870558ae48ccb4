"""``velesio-worker``: take jobs from Redis and run them on llama-server and/or a Stable Diffusion
pipeline (or, with API=false, serve llama.cpp's API on LLM_PORT and AUTOMATIC1111's on SD_PORT
alone, with no Redis at all). Missing models are downloaded first (MODEL_URL, SD_MODEL_URL, ...)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import iter_queue

from velesio_core.download import DownloadError, fetch_missing
from velesio_core.logs import configure_logging
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.redis_clients import sync_client
from velesio_core.settings import Settings, SettingsError, exit_with, load_or_exit
from velesio_core.supervision import AUX_THREADS

from .actors import register_actors
from .runtime import WorkerRuntime, worker_id
from .standalone import serve

log = logging.getLogger("velesio.worker")

#: Seconds the consumers then get to hand their acknowledgements to Redis.
ACK_GRACE_S = 5.0


class _SecondWorkerOnBroker(logging.Filter):
    """Drops Dramatiq's warning that a middleware of the same type was added twice.

    Each dramatiq.Worker adds a middleware of its own to its broker, so the text and the image
    Dramatiq workers of one process add two: each declares its own worker's queues, which is what
    we want. (A broker per Dramatiq worker silences it too, but was seen to stall queued image jobs
    behind a running one in tests/e2e/test_a1111.py, for a cause not yet found.)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "middleware of the same type twice" not in record.getMessage()


def run_queue_worker(settings: Settings) -> None:
    # No Dramatiq middleware, on purpose (WakingRedisBroker's docstring says why).
    broker = WakingRedisBroker(client=sync_client(settings), middleware=[])
    broker.logger.addFilter(_SecondWorkerOnBroker())
    try:
        runtime = WorkerRuntime.start(settings, worker_id(), broker)
    except SettingsError as error:
        exit_with(error)

    register_actors(broker, runtime.card.queues, runtime.supervisor, runtime.sinks)
    workers = []
    if runtime.text_queues:
        text = dramatiq.Worker(
            broker, queues=set(runtime.text_queues), worker_threads=settings.llama_slots + AUX_THREADS
        )
        # Take no more generation jobs than there are slots, leaving the rest for other workers.
        text.queue_prefetch = settings.llama_slots
        workers.append(text)
    if runtime.image_queues:
        # A pipeline runs one image job at a time (diffusers pipelines are not thread-safe, and a
        # checkpoint switch must never happen under a job): a Dramatiq worker of its own, with
        # one thread, that fetches one message at a time and leaves the rest to other workers.
        images = dramatiq.Worker(broker, queues=set(runtime.image_queues), worker_threads=1)
        images.queue_prefetch = 1
        workers.append(images)
    for worker in workers:
        worker.start()
    log.info("worker %s is taking jobs from %s", runtime.card.worker_id, ", ".join(runtime.card.queues))

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()

    drain_s = settings.drain_timeout_s
    log.info("stopping: taking no more jobs, handing back the prefetched ones; running jobs get %g s", drain_s)
    hand_back_prefetched(broker, workers)
    timeout_ms = int((drain_s + 10) * 1000)
    stoppers = [
        threading.Thread(target=worker.stop, kwargs={"timeout": timeout_ms}, name="stopper", daemon=True)
        for worker in workers
    ]
    for stopper in stoppers:
        stopper.start()
    runtime.supervisor.drain(drain_s)
    # Dramatiq retries acks until Redis answers; without Redis the stop would wait for ever.
    acks_due = time.monotonic() + ACK_GRACE_S  # one grace for all: not one per Dramatiq worker
    for stopper in stoppers:
        stopper.join(timeout=max(0.0, acks_due - time.monotonic()))
    if any(stopper.is_alive() for stopper in stoppers):
        log.warning("Redis did not take the last acknowledgements; those jobs go back on the queue when it returns")
    runtime.close()
    broker.close()
    log.info("stopped")


def hand_back_prefetched(broker: WakingRedisBroker, workers: list[dramatiq.Worker]) -> None:
    """Stop fetching, and put the messages fetched but not started back on their queues at once
    (waking idle consumers), so other workers run them now rather than after this one's drain."""
    broker.draining.set()
    for worker in workers:
        by_queue: dict[str, list[MessageProxy]] = defaultdict(list)
        for item in iter_queue(worker.work_queue):
            by_queue[item.message.queue_name].append(item.message)
        for queue_name, messages in by_queue.items():
            try:
                worker.consumers[queue_name].requeue_messages(messages)
                log.info("handed back %d prefetched jobs of %s", len(messages), queue_name)
            except Exception as error:  # Redis gone: the reaper hands them back once we stop beating
                log.warning("could not hand back the prefetched jobs of %s: %s", queue_name, error)


def main() -> None:
    configure_logging()
    settings = load_or_exit()
    if settings.llm_backend is None and not settings.run_sd:
        hint = "set RUN_LLAMACPP, RUN_OLLAMA or RUN_SD to true"
        exit_with(SettingsError("RUN_LLAMACPP", "no backend is enabled", hint))
    try:
        fetch_missing(settings)
    except DownloadError as error:
        exit_with(error.as_settings_error())
    if settings.api:
        run_queue_worker(settings)
    else:
        serve(settings)


if __name__ == "__main__":
    main()
