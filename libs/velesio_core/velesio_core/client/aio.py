""":class:`AsyncClient`: put jobs on velesio's queue from asyncio code and read their answers.

It talks to the same Redis as the API and the workers, the way the API does: a job is one
:class:`~velesio_core.jobs.Job` envelope, queued by
:class:`~velesio_core.queue.redis_queue.RedisJobQueue` and read back with blocking ``XREAD`` (no
sleep and no polling anywhere); models are resolved from the workers' registry as the API
resolves them; requests are validated with the dialects' own schemas, so a bad option is an
:class:`~velesio_core.client.errors.InvalidRequest` before anything is queued; and a job that
stops being read (the stream left, its context closed, its task cancelled) is withdrawn or
cancelled on its worker exactly as when an HTTP client disconnects.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Generic, Literal, TypeVar, overload

import redis.asyncio as aioredis

from ..dialects.a1111 import decode as a1111_decode
from ..dialects.a1111.schemas import Img2ImgRequest, Txt2ImgRequest
from ..dialects.llamacpp import decode as llamacpp_decode
from ..dialects.llamacpp.schemas import CompletionRequest as LlamaCompletionRequest
from ..dialects.llamacpp.schemas import EmbeddingsRequest, TokenizeRequest
from ..dialects.openai.decode import chat_payload
from ..dialects.openai.schemas import ChatCompletionRequest
from ..errors import ErrorKind, GatewayError
from ..events import Event, EventType
from ..jobs import IMAGE_MODEL, Job, JobKind
from ..queue.interface import JobHandle
from ..queue.redis_queue import RedisJobQueue
from ..redis_clients import async_client
from ..registry import CachedModelDirectory, WorkerRegistry, image_pipelines, resolve_model
from ..results import EmbeddingsResult, GenerationResult, ImageResult, ToolCall, ToolCallDelta
from ..settings import Settings
from ..validation import parse
from .admission import Admission, Ticket, Unrestricted
from .errors import VelesioError, from_gateway_error
from .types import (
    ChatCompletion,
    Completion,
    Done,
    Embeddings,
    Images,
    Progress,
    Started,
    Token,
    Tokens,
)

__all__ = ["AsyncClient", "AsyncStream"]

R = TypeVar("R")

#: The API's defaults (QUEUE_CAP, JOB_DEADLINE, JOB_TIMEOUT, SD_MAX_SIDE), for a client given no settings.
DEFAULT_QUEUE_CAP = 256
DEFAULT_DEADLINE_S = 60.0
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_SIDE = 2048

Message = dict[str, Any]


class AsyncStream(Generic[R]):
    """One job's events as typed stream events, ending with :class:`~velesio_core.client.types.Done`.

    Read it once, with ``async for``. Leaving the loop early, leaving ``async with stream:``,
    calling :meth:`aclose`, or cancelling the task that reads it cancels the job on its worker.
    After the loop, :attr:`result` holds the job's result.
    """

    def __init__(self, handle: JobHandle, ticket: Ticket, finish: Callable[[Any, _Collected], R]) -> None:
        self._handle = handle
        self._ticket = ticket
        self._finish = finish
        self._collected = _Collected()
        self._reading = False
        self._ended = False
        self._result: R | None = None
        self._events: AsyncIterator[Started | Token | Progress | Done[R]] | None = None
        self._loop = asyncio.get_running_loop()

    @property
    def job_id(self) -> str:
        return self._handle.job.id

    @property
    def result(self) -> R:
        """The job's result, once the stream has been read to its end."""
        if self._result is None:
            raise RuntimeError("the stream has not been read to its end")
        return self._result

    def __aiter__(self) -> AsyncIterator[Started | Token | Progress | Done[R]]:
        if self._reading:
            raise RuntimeError("a stream can be read only once")
        self._reading = True
        # An async generator: when a loop leaves it early, asyncio closes it, and closing cancels.
        self._events = self._read()
        return self._events

    async def _read(self) -> AsyncIterator[Started | Token | Progress | Done[R]]:
        final: Event | None = None
        job = self._handle.job
        try:
            try:
                async for event in self._handle.events():
                    if event.type is EventType.ERROR:
                        final = event
                        self._ended = True
                        raise from_gateway_error(event.as_error(), job)
                    if event.type is EventType.RESULT:
                        final = event
                        self._ended = True
                        self._result = self._finish(event.value(), self._collected)
                        yield Done(self._result)
                        return
                    public = _public_event(event, self._collected)
                    if public is not None:
                        yield public
            except GatewayError as error:
                # The queue's own failures: no worker in time, the run timeout, Redis gone.
                self._ended = True
                raise from_gateway_error(error, job) from None
            if not self._ended:
                raise VelesioError("the job ended without a result", kind=ErrorKind.SERVER)
        finally:
            await _shielded(self._end(final))

    async def _end(self, final: Event | None) -> None:
        if not self._ended:
            self._ended = True
            await self._handle.cancel()
        await self._ticket.finish(final)

    def __del__(self) -> None:
        # A stream dropped without being read still ends its job, and releases its admission.
        if self._reading or self._ended or self._loop.is_closed():
            return
        self._ended = True
        self._loop.call_soon_threadsafe(_keep_until_done, self._loop, self._release())

    async def _release(self) -> None:
        await self._handle.cancel()
        await self._ticket.finish(None)

    async def aclose(self) -> None:
        """Stop reading; the job is cancelled if it has not ended."""
        if self._events is not None:
            await self._events.aclose()  # type: ignore[attr-defined]
        elif not self._ended:
            self._reading = True
            await _shielded(self._end(None))

    async def __aenter__(self) -> AsyncStream[R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def collect(self) -> R:
        """Read the stream to its end and return the result."""
        async with self:
            async for _event in self:
                pass
        return self.result


#: Releases of dropped streams, referenced until they finish.
_releasing: set[asyncio.Task[None]] = set()


def _keep_until_done(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> None:
    task = loop.create_task(work)
    _releasing.add(task)
    task.add_done_callback(_releasing.discard)


async def _shielded(work: Any) -> None:
    # A cancelled reader still releases its job: the cancellation must reach the worker.
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class _Collected:
    """What a stream's token events said, for the result (a stream's result event has no text)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, ToolCallDelta] = {}

    def add(self, token: Token) -> None:
        self.text.append(token.text)
        if token.reasoning:
            self.reasoning.append(token.reasoning)
        for delta in token.tool_calls or ():
            whole = self.tool_calls.setdefault(delta.get("index", 0), {"function": {"arguments": ""}})
            for key in ("id", "type"):
                if key in delta:
                    whole[key] = delta[key]
            function = delta.get("function") or {}
            if "name" in function:
                whole["function"]["name"] = function["name"]
            whole["function"]["arguments"] = whole["function"].get("arguments", "") + function.get("arguments", "")

    def calls(self) -> list[ToolCall]:
        calls: list[ToolCall] = []
        for index, delta in sorted(self.tool_calls.items()):
            function = delta.get("function") or {}
            calls.append(
                {
                    "id": delta.get("id", f"call_{index}"),
                    "type": "function",
                    "function": {"name": function.get("name", ""), "arguments": function.get("arguments", "")},
                }
            )
        return calls


def _public_event(event: Event, collected: _Collected) -> Started | Token | Progress | None:
    if event.type is EventType.TOKEN:
        piece = event.value()
        token = Token(
            text=piece.get("content") or "",
            reasoning=piece.get("reasoning_content") or None,
            tool_calls=piece.get("tool_calls") or None,
        )
        collected.add(token)
        return token
    if event.type is EventType.PROGRESS:
        step = event.value()
        return Progress(step["step"], step["steps"], step.get("job_no", 0), step.get("job_count", 1))
    if event.type is EventType.STARTED:
        return Started(event.value().get("worker", ""))
    return None


def _completion(model: str) -> Callable[[Any, _Collected], Completion]:
    def finish(result: GenerationResult, collected: _Collected) -> Completion:
        return Completion(
            model=model,
            text=result.get("content") or "".join(collected.text),
            stop_type=result.get("stop_type", "eos"),
            tokens_predicted=int(result.get("tokens_predicted") or 0),
            tokens_evaluated=int(result.get("tokens_evaluated") or 0),
            timings=result.get("timings") or {},
            raw=result,
        )

    return finish


def _chat_completion(model: str) -> Callable[[Any, _Collected], ChatCompletion]:
    def finish(result: GenerationResult, collected: _Collected) -> ChatCompletion:
        reasoning = result.get("reasoning_content") or "".join(collected.reasoning) or None
        return ChatCompletion(
            model=model,
            text=result.get("content") or "".join(collected.text),
            stop_type=result.get("stop_type", "eos"),
            tokens_predicted=int(result.get("tokens_predicted") or 0),
            tokens_evaluated=int(result.get("tokens_evaluated") or 0),
            timings=result.get("timings") or {},
            raw=result,
            reasoning=reasoning,
            tool_calls=list(result.get("tool_calls") or collected.calls()),
        )

    return finish


def _images(result: ImageResult, _collected: _Collected) -> Images:
    return Images.from_result(result)


def _options(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def _key_admission(redis: aioredis.Redis, key: str) -> Admission:
    from ..tenants.config import TenantSettings
    from .keys import KeyAdmission

    tenants = TenantSettings.from_env()
    return KeyAdmission(redis, key, server_secret=tenants.server_secret, lease_ttl_s=tenants.lease_ttl_s)


class AsyncClient:
    """Sends jobs to velesio's workers through Redis, as the API does, from asyncio code.

    ```python
    async with AsyncClient("redis://localhost:6379/0") as client:
        answer = await client.complete("Once upon a time", max_tokens=32)
        print(answer.text)
    ```

    ``redis`` takes an existing client instead of a URL (one made for Redis Sentinel, say).
    ``key`` is a velesio API key: its scopes, limits and fair share apply to the client's jobs
    as to an HTTP client's (the API's KEY_SECRET and KEY_LEASE_TTL are read from the
    environment). ``admission`` is any other :class:`~velesio_core.client.admission.Admission`;
    with neither, every job is admitted, as for an ``API_TOKENS`` token. ``queue_cap``,
    ``deadline_s`` and ``timeout_s`` are the API's QUEUE_CAP, JOB_DEADLINE and JOB_TIMEOUT: give
    the values your deployment uses.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis: aioredis.Redis | None = None,
        admission: Admission | None = None,
        key: str | None = None,
        queue_cap: int = DEFAULT_QUEUE_CAP,
        deadline_s: float = DEFAULT_DEADLINE_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> None:
        if (redis_url is None) == (redis is None):
            raise ValueError("give either redis_url or redis")
        if redis is not None:
            self._queue = RedisJobQueue(redis, queue_cap=queue_cap)
        else:
            assert redis_url is not None
            self._queue = RedisJobQueue.from_url(redis_url, queue_cap=queue_cap)
        self._models = CachedModelDirectory(WorkerRegistry(self._queue.redis))
        if key is not None and admission is not None:
            raise ValueError("give either key or admission")
        if key is not None:
            self._admission: Admission = _key_admission(self._queue.redis, key)
        else:
            self._admission = admission or Unrestricted()
        self._deadline_s = deadline_s
        self._timeout_s = timeout_s
        self._max_side = max_side
        self._following = False

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, key: str | None = None, admission: Admission | None = None
    ) -> AsyncClient:
        """A client set up as velesio's API is: Redis from REDIS_URL or REDIS_SENTINELS (it then
        follows a failover as the API does), and QUEUE_CAP, JOB_DEADLINE, JOB_TIMEOUT and
        SD_MAX_SIDE; from the environment when ``settings`` is None."""
        settings = settings or Settings.from_env()
        return cls(
            redis=async_client(settings),
            admission=admission,
            key=key,
            queue_cap=settings.queue_cap,
            deadline_s=settings.job_deadline_s,
            timeout_s=settings.job_timeout_s,
            max_side=settings.sd_max_side,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._admission.close()
        await self._queue.close()

    # -- models ------------------------------------------------------------------------------

    async def models(self) -> list[str]:
        """The models velesio's workers serve now, the default one first."""
        try:
            return [model.id for model in await self._models.models(fresh=True)]
        except GatewayError as error:
            raise from_gateway_error(error) from None

    async def _model(self, name: str | None) -> str:
        try:
            return (await resolve_model(self._models, name)).id
        except GatewayError as error:
            raise from_gateway_error(error) from None

    # -- text --------------------------------------------------------------------------------

    @overload
    async def complete(
        self, prompt: str, *, model: str | None = ..., max_tokens: int | None = ..., temperature: float | None = ...,
        stop: Sequence[str] | None = ..., seed: int | None = ..., stream: Literal[False] = ..., **options: Any,
    ) -> Completion: ...  # fmt: skip
    @overload
    async def complete(
        self, prompt: str, *, model: str | None = ..., max_tokens: int | None = ..., temperature: float | None = ...,
        stop: Sequence[str] | None = ..., seed: int | None = ..., stream: Literal[True], **options: Any,
    ) -> AsyncStream[Completion]: ...  # fmt: skip
    async def complete(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        stream: bool = False,
        **options: Any,
    ) -> Completion | AsyncStream[Completion]:
        """Continue ``prompt``. ``options`` are llama.cpp's ``/completion`` fields (``top_k``,
        ``grammar``, ``ignore_eos``, ...), checked as the API checks them."""
        body = {"prompt": prompt} | _options(
            n_predict=max_tokens, temperature=temperature, stop=list(stop) if stop else None, seed=seed
        ) | options  # fmt: skip
        payload = self._valid(lambda: llamacpp_decode.forwarded(parse(LlamaCompletionRequest, body)))
        name = await self._model(model)
        return await self._run(JobKind.COMPLETION, payload, name, stream, _completion(name))

    @overload
    async def chat(
        self, messages: Sequence[Message], *, model: str | None = ..., max_tokens: int | None = ...,
        temperature: float | None = ..., stop: Sequence[str] | None = ..., seed: int | None = ...,
        tools: Sequence[dict[str, Any]] | None = ..., stream: Literal[False] = ..., **options: Any,
    ) -> ChatCompletion: ...  # fmt: skip
    @overload
    async def chat(
        self, messages: Sequence[Message], *, model: str | None = ..., max_tokens: int | None = ...,
        temperature: float | None = ..., stop: Sequence[str] | None = ..., seed: int | None = ...,
        tools: Sequence[dict[str, Any]] | None = ..., stream: Literal[True], **options: Any,
    ) -> AsyncStream[ChatCompletion]: ...  # fmt: skip
    async def chat(
        self,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        stream: bool = False,
        **options: Any,
    ) -> ChatCompletion | AsyncStream[ChatCompletion]:
        """Answer a conversation (OpenAI's ``messages``), rendered with the model's own chat
        template. ``options`` are OpenAI's chat fields (``response_format``, ``tool_choice``, ...)
        and llama.cpp's sampling options."""
        # OpenAI's schema wants a model name; the payload leaves it out, and the job names the resolved one.
        body = {"model": model or "default", "messages": list(messages)} | _options(
            max_tokens=max_tokens, temperature=temperature, stop=list(stop) if stop else None, seed=seed,
            tools=list(tools) if tools else None,
        ) | options  # fmt: skip
        payload = self._valid(lambda: chat_payload(parse(ChatCompletionRequest, body)))
        name = await self._model(model)
        return await self._run(JobKind.CHAT, payload, name, stream, _chat_completion(name))

    async def embed(self, texts: str | Sequence[str], *, model: str | None = None) -> Embeddings:
        """One embedding vector per text (a single string gives one vector)."""
        content = texts if isinstance(texts, str) else list(texts)
        payload = self._valid(lambda: llamacpp_decode.forwarded(parse(EmbeddingsRequest, {"content": content})))
        name = await self._model(model)

        def finish(result: EmbeddingsResult, _collected: _Collected) -> Embeddings:
            return Embeddings(name, result["embeddings"], int(result.get("prompt_tokens") or 0))

        return await (await self._open(self._job(JobKind.EMBEDDINGS, payload, name, False), finish)).collect()

    async def tokenize(self, text: str, *, model: str | None = None, add_special: bool | None = None) -> Tokens:
        """The model's token ids for ``text``."""
        body = {"content": text} | _options(add_special=add_special)
        payload = self._valid(lambda: llamacpp_decode.forwarded(parse(TokenizeRequest, body)))
        name = await self._model(model)

        def finish(result: dict[str, Any], _collected: _Collected) -> Tokens:
            return Tokens(name, [token if isinstance(token, int) else token["id"] for token in result["tokens"]])

        return await (await self._open(self._job(JobKind.TOKENIZE, payload, name, False), finish)).collect()

    # -- images ------------------------------------------------------------------------------

    @overload
    async def txt2img(
        self, prompt: str, *, checkpoint: str | None = ..., stream: Literal[False] = ..., **options: Any
    ) -> Images: ...
    @overload
    async def txt2img(
        self, prompt: str, *, checkpoint: str | None = ..., stream: Literal[True], **options: Any
    ) -> AsyncStream[Images]: ...
    async def txt2img(
        self, prompt: str, *, checkpoint: str | None = None, stream: bool = False, **options: Any
    ) -> Images | AsyncStream[Images]:
        """Draw ``prompt``. ``options`` are AUTOMATIC1111's txt2img fields (``steps``, ``width``,
        ``seed``, ``sampler_name``, ...). ``checkpoint`` picks the checkpoint; else the image
        worker's loaded one. With ``stream``, the steps come as Progress events."""
        request = self._valid(lambda: parse(Txt2ImgRequest, {"prompt": prompt} | options))
        return await self._images(JobKind.TXT2IMG, request, checkpoint, stream)

    @overload
    async def img2img(
        self, image: bytes, prompt: str, *, mask: bytes | None = ..., checkpoint: str | None = ...,
        stream: Literal[False] = ..., **options: Any,
    ) -> Images: ...  # fmt: skip
    @overload
    async def img2img(
        self, image: bytes, prompt: str, *, mask: bytes | None = ..., checkpoint: str | None = ...,
        stream: Literal[True], **options: Any,
    ) -> AsyncStream[Images]: ...  # fmt: skip
    async def img2img(
        self,
        image: bytes,
        prompt: str,
        *,
        mask: bytes | None = None,
        checkpoint: str | None = None,
        stream: bool = False,
        **options: Any,
    ) -> Images | AsyncStream[Images]:
        """Redraw ``image`` (PNG or JPEG bytes) after ``prompt``; with ``mask``, only where the mask
        is white (inpainting). ``options`` are AUTOMATIC1111's img2img fields
        (``denoising_strength``, ``steps``, ...)."""
        body = {"prompt": prompt, "init_images": [base64.b64encode(image).decode()]} | options
        if mask is not None:
            body["mask"] = base64.b64encode(mask).decode()
        request = self._valid(lambda: parse(Img2ImgRequest, body))
        return await self._images(JobKind.IMG2IMG, request, checkpoint, stream)

    async def _images(
        self, kind: JobKind, request: Txt2ImgRequest, checkpoint: str | None, stream: bool
    ) -> Images | AsyncStream[Images]:
        self._valid(lambda: a1111_decode.check_size(request, max_side=self._max_side))
        payload = self._valid(lambda: a1111_decode.payload(request))
        if checkpoint is not None:
            payload["sd_model_checkpoint"] = checkpoint
        try:
            await image_pipelines(self._models)  # no image worker: Unavailable now, not after the deadline
        except GatewayError as error:
            raise from_gateway_error(error) from None
        return await self._run(kind, payload, IMAGE_MODEL, stream, _images)

    # -- the path every job takes ------------------------------------------------------------

    @staticmethod
    def _valid(build: Callable[[], R]) -> R:
        try:
            return build()
        except GatewayError as error:
            raise from_gateway_error(error) from None

    def _job(self, kind: JobKind, payload: dict[str, Any], model: str, stream: bool) -> Job:
        return Job.create(
            kind, payload, model=model, stream=stream, deadline_s=self._deadline_s, timeout_s=self._timeout_s
        )

    async def _run(
        self, kind: JobKind, payload: dict[str, Any], model: str, stream: bool, finish: Callable[[Any, _Collected], R]
    ) -> R | AsyncStream[R]:
        opened = await self._open(self._job(kind, payload, model, stream), finish)
        return opened if stream else await opened.collect()

    async def _open(self, job: Job, finish: Callable[[Any, _Collected], R]) -> AsyncStream[R]:
        if not self._following:
            # On the loop the client runs on (a client of one Redis needs nothing; see redis_clients).
            self._following = True
            await self._queue.start()
        try:
            ticket = await self._admission.admit(job)
        except GatewayError as error:
            raise from_gateway_error(error) from None
        try:
            handle = await self._queue.submit(ticket.job)
        except BaseException as error:
            await _shielded(ticket.finish(None))
            if isinstance(error, GatewayError):
                raise from_gateway_error(error) from None
            raise
        return AsyncStream(handle, ticket, finish)
