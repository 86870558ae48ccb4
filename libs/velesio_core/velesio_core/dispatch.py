"""Dispatch one job to the backend method its kind names (an LLM's, or an image pipeline's) and
report what happens as events. What surrounds the run (deadlines, cancellation, the watchdog,
draining) is supervision.py's."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .backends.base import LlmBackend
from .cancellation import Cancellation, JobCancelled, error_for
from .errors import ErrorKind, GatewayError
from .events import Event, EventType
from .image_board import ImageBoardWriter
from .jobs import Job, JobKind
from .queue.event_sink import EventSink
from .results import ImageResult, SdOptionsResult

if TYPE_CHECKING:  # torch and diffusers load only where images run
    from .backends.sd.backend import SdBackend

log = logging.getLogger(__name__)


class JobDispatcher:
    def __init__(
        self,
        backend: LlmBackend | None,
        *,
        worker_id: str,
        images: SdBackend | None = None,
        board: ImageBoardWriter | None = None,
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.images = images
        self.board = board

    def run(self, job: Job, sink: EventSink, cancellation: Cancellation) -> None:
        """Emit the job's events, ending with exactly one result or error.

        A job cancelled because its client left ends silently (JobCancelled propagates): there
        is nobody left to tell. Timeouts and shutdowns end with an error the client can act on.
        """
        try:
            self._run(job, sink, cancellation)
        except JobCancelled as cancelled:
            error = error_for(cancelled.reason, timeout_s=job.timeout_s)
            if error is None:
                raise
            sink.emit(Event.error(error))
        except GatewayError as error:
            sink.emit(Event.error(error))
        except Exception:
            log.exception("job %s (%s) failed", job.id, job.kind)
            failure = GatewayError(ErrorKind.SERVER, "the worker failed to run the job; its log has the details")
            sink.emit(Event.error(failure))

    def _run(self, job: Job, sink: EventSink, cancellation: Cancellation) -> None:
        if job.kind.is_image:
            sink.emit(Event.of(EventType.RESULT, self._run_image(job, sink, cancellation)))
            return
        backend, model = self.backend, job.model
        if backend is None:
            raise GatewayError(ErrorKind.NOT_SUPPORTED, f"this worker runs no LLM, so it cannot run {job.kind} jobs")
        if job.kind is JobKind.COMPLETION or job.kind is JobKind.CHAT:
            generate = backend.complete if job.kind is JobKind.COMPLETION else backend.chat
            for events in generate(job.payload, model=model, stream=job.stream, cancellation=cancellation):
                sink.emit(*events)
            return
        if job.kind is JobKind.TOKENIZE:
            result = backend.tokenize(job.payload, model=model, cancellation=cancellation)
        elif job.kind is JobKind.DETOKENIZE:
            result = backend.detokenize(job.payload, model=model, cancellation=cancellation)
        elif job.kind is JobKind.APPLY_TEMPLATE:
            result = backend.apply_template(job.payload, model=model, cancellation=cancellation)
        elif job.kind is JobKind.EMBEDDINGS:
            result = backend.embeddings(job.payload, model=model, cancellation=cancellation)
        elif job.kind is JobKind.SLOTS:
            result = backend.slots(model=model, cancellation=cancellation)
        elif job.kind is JobKind.LLAMA_ENDPOINT:
            result = backend.endpoint(
                job.payload["endpoint"], job.payload["body"], model=model, cancellation=cancellation
            )
        else:
            raise GatewayError(ErrorKind.NOT_SUPPORTED, f"this worker cannot run {job.kind} jobs")
        sink.emit(Event.of(EventType.RESULT, result))

    def _run_image(self, job: Job, sink: EventSink, cancellation: Cancellation) -> ImageResult | SdOptionsResult:
        if self.images is None:
            raise GatewayError(
                ErrorKind.NOT_SUPPORTED, f"this worker runs no image pipeline, so it cannot run {job.kind} jobs"
            )
        board = self.board

        def emit(event: Event) -> None:
            sink.emit(event)
            if board is not None:
                board.progress(job, event)

        if board is not None:
            board.begin(job)
        try:
            return self.images.run(job, emit, cancellation)
        finally:
            if board is not None:
                board.end(job)
