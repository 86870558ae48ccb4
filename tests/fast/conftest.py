"""The fast layer's stack: velesio's real API over its real in-process queue, with a fake model.

``create_app`` (the API gunicorn serves, every dialect, auth, errors, metrics) runs over
``LocalJobQueue``, ``JobSupervisor`` and ``JobDispatcher`` (what a standalone worker runs), all real;
only the model is a fake (tests/support/fake_backend.py), so nothing needs Redis or llama-server.
Requests go through ``falcon.testing``: an ``ASGIConductor`` holds the app's lifespan for a whole
test, and each request is driven by falcon.testing's ASGI scope, request emitter and response
collector (see :meth:`FastStack.aexchange` for why not ``simulate_request``), which also keep a
response's writes apart, for the stream framing rules.
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from falcon import testing
from falcon.util import async_to_sync, code_to_http_status

from tests.support.fake_backend import FakeImages, FakeLlm, FakeModels
from velesio_api.app import create_app
from velesio_core.dispatch import JobDispatcher
from velesio_core.image_board import LocalImageBoard
from velesio_core.queue.local_queue import LocalJobQueue
from velesio_core.settings import Settings
from velesio_core.supervision import JobSupervisor

TOKEN = "fast-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"unity:{TOKEN}".encode()).decode()}


def run(coroutine_function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a coroutine on the event loop the conductor's requests run on."""
    return async_to_sync(coroutine_function, *args, **kwargs)


@dataclass
class Written:
    """A response as the ASGI server received it: every body write kept apart."""

    #: None when the client left before the app answered anything.
    status: int | None
    headers: dict[str, str]
    chunks: list[bytes]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class FastStack:
    app: Any
    settings: Settings
    llm: FakeLlm | None
    images: FakeImages | None
    board: LocalImageBoard
    conductor: testing.ASGIConductor

    def request(self, method: str, path: str, **kwargs: Any) -> testing.Result:
        """One request, answered in full (see :meth:`arequest` for the arguments)."""
        return run(self.arequest, method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> testing.Result:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> testing.Result:
        return self.request("POST", path, json=json, **kwargs)

    def writes(self, method: str, path: str, json: Any = None, **kwargs: Any) -> Written:
        """The response write by write (see :meth:`aexchange` for the arguments)."""
        return run(self.aexchange, method, path, json=json, **kwargs)

    async def arequest(self, method: str, path: str, **kwargs: Any) -> testing.Result:
        written = await self.aexchange(method, path, **kwargs)
        assert written.status is not None, "the app sent no response"
        return testing.Result(written.chunks, code_to_http_status(written.status), list(written.headers.items()))

    async def aexchange(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: dict[str, str] | None = BEARER,
        disconnect_after: int | None = None,
        declared_length: bool = True,
    ) -> Written:
        """Send a request with a token (unless ``auth`` says otherwise) and keep the connection
        open until the app has answered; ``disconnect_after``: the client leaves once it has
        received that many body writes; ``declared_length`` False sends no Content-Length (a
        chunked upload).

        falcon.testing's ``simulate_request`` cannot be used for this: its simulated client hangs
        up as soon as it has sent its body, and velesio, rightly, cancels the job of a client
        that has gone. The same falcon.testing helpers drive the app here, with a client that stays.
        """
        data = orjson.dumps(json) if json is not None else (body or b"")
        sent = {**(auth or {}), **({"Content-Type": "application/json"} if json is not None else {}), **(headers or {})}
        scope = testing.create_scope(
            path=path,
            method=method,
            headers=sent,
            content_length=len(data) if data and declared_length else None,
            query_string=urlencode(params or {}),
        )
        emitter = testing.ASGIRequestEventEmitter(data)
        collector = testing.ASGIResponseEventCollector()
        task = asyncio.get_running_loop().create_task(self.app(scope, emitter, collector))
        if disconnect_after is not None:
            while sum(1 for chunk in collector.body_chunks if chunk) < disconnect_after and not task.done():
                await asyncio.sleep(0.001)
            emitter.disconnect()
        await task
        emitter.disconnect()
        return Written(collector.status, dict(collector.headers), [chunk for chunk in collector.body_chunks if chunk])


def build_stack(*, llm: bool = True, images: bool = True, **env: str) -> tuple[FastStack, Callable[[], None]]:
    settings = Settings.from_env({"API_TOKENS": TOKEN, "LLAMA_SLOTS": "2", "MAX_BODY_BYTES": "65536", **env})
    fake_llm = FakeLlm() if llm else None
    fake_images = FakeImages() if images else None
    board = LocalImageBoard()
    supervisor = JobSupervisor(JobDispatcher(fake_llm, worker_id="fast-worker", images=fake_images, board=board))
    board.control_job = supervisor.control
    queue = LocalJobQueue(supervisor, slots=settings.llama_slots, queue_cap=settings.queue_cap, board=board)
    app = create_app(settings, queue, FakeModels(fake_llm, fake_images), board)
    conductor = testing.ASGIConductor(app)
    run(conductor.__aenter__)
    stack = FastStack(app, settings, fake_llm, fake_images, board, conductor)

    def close() -> None:
        # Release whatever a test left waiting, then end the app's lifespan (which closes the queue).
        if fake_llm is not None and fake_llm.hold is not None:
            fake_llm.hold.release()
        if fake_images is not None:
            fake_images.release_step.set()
        run(conductor.__aexit__, None, None, None)

    return stack, close


@pytest.fixture
def make_stack() -> Iterator[Callable[..., FastStack]]:
    """Build stacks with other settings or backends (``make_stack(JOB_TIMEOUT="0.3")``)."""
    closers: list[Callable[[], None]] = []

    def make(**options: Any) -> FastStack:
        stack, close = build_stack(**options)
        closers.append(close)
        return stack

    yield make
    for close in closers:
        close()


@pytest.fixture
def stack(make_stack) -> FastStack:
    """An LLM (the fake storyteller) and an image pipeline, behind every dialect."""
    return make_stack()


def eventually(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Wait for something a job's own thread does (the bound only keeps a broken test from hanging)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.002)


async def arrived(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """:func:`eventually`, for a coroutine that must let the app run while it waits."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.001)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A fast test that hangs (a job held forever) fails, rather than stopping the suite.
    for item in items:
        if "tests/fast/" in item.nodeid:
            item.add_marker(pytest.mark.timeout(60))


def sse_events(chunks: list[bytes]) -> list[Any]:
    """The JSON of each ``data: <json>\\n\\n`` event (``[DONE]`` as the string). A chunk holds
    whole events: one, or those that arrived together, never part of one."""
    events = []
    for chunk in chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n"), chunk
        for event in chunk[:-2].split(b"\n\n"):
            assert event.startswith(b"data: "), chunk
            data = event[len(b"data: ") :]
            events.append("[DONE]" if data == b"[DONE]" else jsonlib.loads(data))
    return events


def ndjson(body: bytes) -> list[Any]:
    assert body.endswith(b"\n"), body
    return [jsonlib.loads(line) for line in body.split(b"\n")[:-1]]
