""":class:`Client`: the blocking face of :class:`~velesio_core.client.aio.AsyncClient`, for code
that does not run asyncio (a game server's loop, a Discord bot's threads, a script).

It runs an :class:`AsyncClient` on an event loop of its own, on one background thread, so a job
waits on the same blocking ``XREAD`` as the API's; any number of threads may share one client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Generic, Literal, TypeVar, cast, overload

import redis.asyncio as aioredis

from ..redis_clients import async_client
from ..settings import Settings
from .admission import Admission
from .aio import DEFAULT_DEADLINE_S, DEFAULT_MAX_SIDE, DEFAULT_QUEUE_CAP, DEFAULT_TIMEOUT_S, AsyncClient, AsyncStream
from .types import ChatCompletion, Completion, Done, Embeddings, Images, Progress, Started, Token, Tokens

__all__ = ["Client", "Stream"]

T = TypeVar("T")
R = TypeVar("R")


class _Loop:
    """An event loop on a daemon thread, running what the client's callers hand it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="velesio-client", daemon=True)
        self._thread.start()

    def submit(self, work: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        future = self.submit(work)
        try:
            return future.result()
        except BaseException:
            # Interrupted while waiting (Ctrl-C): the work stops too, which cancels its job.
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Stream(Generic[R]):
    """One job's events, read with a ``for`` loop; the last one is a Done with the result.

    Leaving the loop early (``break``, an exception), leaving ``with stream:``, or calling
    :meth:`close` cancels the job on its worker, as a client that disconnects does.
    """

    def __init__(self, loop: _Loop, stream: AsyncStream[R]) -> None:
        self._loop = loop
        self._stream = stream
        self._reading = False

    @property
    def job_id(self) -> str:
        return self._stream.job_id

    @property
    def result(self) -> R:
        """The job's result, once the stream has been read to its end."""
        return self._stream.result

    def __iter__(self) -> Iterator[Started | Token | Progress | Done[R]]:
        if self._reading:
            raise RuntimeError("a stream can be read only once")
        self._reading = True
        events = aiter(self._stream)

        async def next_event() -> Started | Token | Progress | Done[R]:
            return await anext(events)

        try:
            while True:
                try:
                    yield self._loop.run(next_event())
                except StopAsyncIteration:
                    return
        finally:
            # A generator left early is closed at once (CPython), and this cancels the job.
            self.close()

    def __del__(self) -> None:
        # A stream dropped without being read still ends its job (without waiting for it here).
        if not self._reading and not self._loop.loop.is_closed():
            self._loop.submit(self._stream.aclose())

    def close(self) -> None:
        """Stop reading; the job is cancelled if it has not ended."""
        self._loop.run(self._stream.aclose())

    def __enter__(self) -> Stream[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Client:
    """Sends jobs to velesio's workers through Redis, as the API does, and waits for the answers.

    ```python
    with Client("redis://localhost:6379/0") as client:
        print(client.complete("Once upon a time", max_tokens=32).text)
        for event in client.chat([{"role": "user", "content": "Hi"}], stream=True):
            if isinstance(event, Token):
                print(event.text, end="", flush=True)
    ```

    The arguments are :class:`~velesio_core.client.aio.AsyncClient`'s. ``redis``, when given,
    must be a ``redis.asyncio`` client; pass ``redis_factory`` instead to build it on the
    client's own event loop (a client made for Redis Sentinel, say).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_factory: Callable[[], aioredis.Redis] | None = None,
        admission: Admission | Callable[[], Admission] | None = None,
        key: str | None = None,
        queue_cap: int = DEFAULT_QUEUE_CAP,
        deadline_s: float = DEFAULT_DEADLINE_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> None:
        self._loop = _Loop()

        async def start() -> AsyncClient:
            chosen = admission() if callable(admission) else admission
            return AsyncClient(
                redis_url,
                redis=redis_factory() if redis_factory is not None else None,
                admission=chosen,
                key=key,
                queue_cap=queue_cap,
                deadline_s=deadline_s,
                timeout_s=timeout_s,
                max_side=max_side,
            )

        try:
            self._client = self._loop.run(start())
        except BaseException:
            self._loop.stop()
            raise

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        key: str | None = None,
        admission: Admission | Callable[[], Admission] | None = None,
    ) -> Client:
        """A client set up as velesio's API is (see
        :meth:`AsyncClient.from_settings <velesio_core.client.aio.AsyncClient.from_settings>`)."""
        chosen = settings or Settings.from_env()
        return cls(
            redis_factory=lambda: async_client(chosen),
            admission=admission,
            key=key,
            queue_cap=chosen.queue_cap,
            deadline_s=chosen.job_deadline_s,
            timeout_s=chosen.job_timeout_s,
            max_side=chosen.sd_max_side,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._client.close())
        self._loop.stop()

    # The methods pass **options on, which mypy cannot match to one overload: cast to what the
    # overload without ``stream`` returns.
    def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await work()

        return self._loop.run(run())

    def _stream(self, work: Callable[[], Awaitable[AsyncStream[R]]]) -> Stream[R]:
        return Stream(self._loop, self._call(work))

    def models(self) -> list[str]:
        """The models velesio's workers serve now, the default one first."""
        return self._call(self._client.models)

    @overload
    def complete(
        self, prompt: str, *, model: str | None = ..., max_tokens: int | None = ..., temperature: float | None = ...,
        stop: Sequence[str] | None = ..., seed: int | None = ..., stream: Literal[False] = ..., **options: Any,
    ) -> Completion: ...  # fmt: skip
    @overload
    def complete(
        self, prompt: str, *, model: str | None = ..., max_tokens: int | None = ..., temperature: float | None = ...,
        stop: Sequence[str] | None = ..., seed: int | None = ..., stream: Literal[True], **options: Any,
    ) -> Stream[Completion]: ...  # fmt: skip
    def complete(self, prompt: str, *, stream: bool = False, **options: Any) -> Completion | Stream[Completion]:
        """Continue ``prompt``; see :meth:`AsyncClient.complete <velesio_core.client.aio.AsyncClient.complete>`."""
        if stream:
            return self._stream(lambda: self._client.complete(prompt, stream=True, **options))
        return cast(Completion, self._call(lambda: self._client.complete(prompt, **options)))

    @overload
    def chat(
        self, messages: Sequence[dict[str, Any]], *, model: str | None = ..., max_tokens: int | None = ...,
        temperature: float | None = ..., stop: Sequence[str] | None = ..., seed: int | None = ...,
        tools: Sequence[dict[str, Any]] | None = ..., stream: Literal[False] = ..., **options: Any,
    ) -> ChatCompletion: ...  # fmt: skip
    @overload
    def chat(
        self, messages: Sequence[dict[str, Any]], *, model: str | None = ..., max_tokens: int | None = ...,
        temperature: float | None = ..., stop: Sequence[str] | None = ..., seed: int | None = ...,
        tools: Sequence[dict[str, Any]] | None = ..., stream: Literal[True], **options: Any,
    ) -> Stream[ChatCompletion]: ...  # fmt: skip
    def chat(
        self, messages: Sequence[dict[str, Any]], *, stream: bool = False, **options: Any
    ) -> ChatCompletion | Stream[ChatCompletion]:
        """Answer a conversation; see :meth:`AsyncClient.chat <velesio_core.client.aio.AsyncClient.chat>`."""
        if stream:
            return self._stream(lambda: self._client.chat(messages, stream=True, **options))
        return cast(ChatCompletion, self._call(lambda: self._client.chat(messages, **options)))

    def embed(self, texts: str | Sequence[str], *, model: str | None = None) -> Embeddings:
        """One embedding vector per text."""
        return self._call(lambda: self._client.embed(texts, model=model))

    def tokenize(self, text: str, *, model: str | None = None, add_special: bool | None = None) -> Tokens:
        """The model's token ids for ``text``."""
        return self._call(lambda: self._client.tokenize(text, model=model, add_special=add_special))

    @overload
    def txt2img(
        self, prompt: str, *, checkpoint: str | None = ..., stream: Literal[False] = ..., **options: Any
    ) -> Images: ...
    @overload
    def txt2img(
        self, prompt: str, *, checkpoint: str | None = ..., stream: Literal[True], **options: Any
    ) -> Stream[Images]: ...
    def txt2img(self, prompt: str, *, stream: bool = False, **options: Any) -> Images | Stream[Images]:
        """Draw ``prompt``; see :meth:`AsyncClient.txt2img <velesio_core.client.aio.AsyncClient.txt2img>`."""
        if stream:
            return self._stream(lambda: self._client.txt2img(prompt, stream=True, **options))
        return cast(Images, self._call(lambda: self._client.txt2img(prompt, **options)))

    @overload
    def img2img(
        self, image: bytes, prompt: str, *, mask: bytes | None = ..., checkpoint: str | None = ...,
        stream: Literal[False] = ..., **options: Any,
    ) -> Images: ...  # fmt: skip
    @overload
    def img2img(
        self, image: bytes, prompt: str, *, mask: bytes | None = ..., checkpoint: str | None = ...,
        stream: Literal[True], **options: Any,
    ) -> Stream[Images]: ...  # fmt: skip
    def img2img(self, image: bytes, prompt: str, *, stream: bool = False, **options: Any) -> Images | Stream[Images]:
        """Redraw ``image``; see :meth:`AsyncClient.img2img <velesio_core.client.aio.AsyncClient.img2img>`."""
        if stream:
            return self._stream(lambda: self._client.img2img(image, prompt, stream=True, **options))
        return cast(Images, self._call(lambda: self._client.img2img(image, prompt, **options)))
