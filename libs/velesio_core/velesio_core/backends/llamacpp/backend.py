"""The llama-server backend: velesio's jobs as HTTP calls to a llama.cpp server.

Completions are always requested from llama-server as a stream, also for clients that want one
whole answer: llama-server notices a client leaving only while it streams (a non-streamed request
runs to its end, measured), and cancelling a job must free its slot. A streaming job forwards each
chunk as the exact bytes llama-server wrote, unparsed but for its ``stop`` flag; a whole answer is
assembled from the chunks the way llama-server assembles it when not streaming.
"""

from __future__ import annotations

import http.client
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson

from ...cancellation import Cancellation, JobCancelled, cancel_after
from ...dialects.openai.tool_calls import merge_tool_call, merged_tool_calls
from ...errors import ErrorKind, GatewayError, not_supported, unavailable
from ...events import Event, EventType
from ...http_pool import HttpPool
from ...results import GenerationResult, Logprobs, StopType, Timings, TokenPiece, ToolCall
from ..base import HEALTH_TIMEOUT_S, ModelInfo

log = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json"}

#: llama-server's endpoints that velesio relays as they are (JobKind.LLAMA_ENDPOINT); any other
#: path stays unreachable through a job, whatever a job's payload says.
LLAMA_ENDPOINTS = frozenset({"/infill", "/rerank", "/v1/chat/completions/input_tokens"})
_UNREACHABLE = (OSError, http.client.HTTPException)


class LlamaServerBackend:
    def __init__(
        self,
        url: str,
        *,
        embeddings_url: str | None = None,
        api_key: str | None = None,
        model_file: Path | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = HttpPool(url, headers=headers)
        self._embeddings_http = HttpPool(embeddings_url, headers=headers) if embeddings_url else None
        self._general_name, self._architecture = _gguf_names(model_file)

    def close(self) -> None:
        self._http.close()
        if self._embeddings_http is not None:
            self._embeddings_http.close()

    def complete(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        # response_fields would strip the final chunk of the "stop" that marks it as final: it is
        # applied here instead, to that chunk, as llama-server applies it.
        request = dict(request)
        fields = request.pop("response_fields", None)
        body = orjson.dumps({**request, "stream": True})
        try:
            with self._http.request("POST", "/completion", body, headers=_JSON, cancellation=cancellation) as response:
                if response.status != 200:
                    raise _error_from(response)
                if stream:
                    batches = _stream_events(_sse_batches(response, self._http, cancellation))
                else:
                    chunks = _sse_data(response, cancellation)
                    batches = iter([[_whole_answer(chunks, return_tokens=bool(request.get("return_tokens")))]])
                for events in batches:
                    if fields and events[-1].type is EventType.RESULT:
                        # What response_fields picks is llama-server's own JSON, which the llama.cpp
                        # dialect (the only one with response_fields) forwards as it is: not a
                        # GenerationResult any more, so it goes out as the bytes of its JSON.
                        picked = nested_values(fields, orjson.loads(events[-1].data))
                        events[-1] = Event(EventType.RESULT, orjson.dumps(picked))
                    yield events
        except _UNREACHABLE as error:
            cancellation.check()
            raise _unreachable(error) from None

    def chat(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        # llama-server's OpenAI endpoint renders the messages with the model's own template and
        # parses tool calls and reasoning; its chunks are translated to velesio's events.
        body = orjson.dumps({**request, "stream": True, "stream_options": {"include_usage": True}})
        path = "/v1/chat/completions"
        try:
            with self._http.request("POST", path, body, headers=_JSON, cancellation=cancellation) as response:
                if response.status != 200:
                    raise _error_from(response)
                chat = _ChatStream(stream)
                if not stream:
                    for data in _sse_data(response, cancellation):
                        if data == b"[DONE]":
                            break
                        chat.feed(_chunk(data))
                    yield [chat.result()]
                    return
                for batch in _sse_batches(response, self._http, cancellation):
                    events: list[Event] = []
                    for data in batch:
                        if data == b"[DONE]":
                            yield [*events, chat.result()]
                            return
                        try:
                            chunk = _chunk(data)
                        except GatewayError:
                            if events:  # the tokens read with the error reach the client first
                                yield events
                            raise
                        if (event := chat.feed(chunk)) is not None:
                            events.append(event)
                    if events:
                        yield events
                yield [chat.result()]
        except _UNREACHABLE as error:
            cancellation.check()
            raise _unreachable(error) from None

    def tokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        return self._post(self._http, "/tokenize", request, cancellation)

    def detokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        try:
            return self._post(self._http, "/detokenize", request, cancellation)
        except GatewayError as error:
            # llama-server answers a token id past its vocabulary with a 500 from a C++ range
            # check (found by the chaos suite's fuzzing); _error_from already makes it the 400
            # it is, and here it gets words a client can act on.
            if "_M_range_check" in error.message:
                raise GatewayError(
                    ErrorKind.INVALID_REQUEST, "tokens: an id is outside the model's vocabulary"
                ) from None
            raise

    def apply_template(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        return self._post(self._http, "/apply-template", request, cancellation)

    def embeddings(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        if self._embeddings_http is None:
            raise not_supported("embeddings are turned off on this worker (LLAMA_EMBEDDINGS=false)")
        # The OpenAI endpoint also counts the prompt's tokens, which OpenAI's answer must carry.
        body = {**request, "input": request.get("input", request.get("content"))}
        body.pop("content", None)
        answer = self._post(self._embeddings_http, "/v1/embeddings", body, cancellation)
        data = sorted(answer.get("data") or (), key=lambda item: item.get("index", 0))
        return {
            "embeddings": [item["embedding"] for item in data],
            "prompt_tokens": (answer.get("usage") or {}).get("prompt_tokens", 0),
        }

    def slots(self, *, model: str, cancellation: Cancellation) -> Any:
        return self._get("/slots", cancellation)

    def endpoint(self, path: str, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        if path not in LLAMA_ENDPOINTS:
            raise not_supported(f"velesio does not relay {path} to llama-server")
        # /rerank answers only when llama-server runs a reranker model with --reranking
        # (LLAMA_SERVER_ARGS); otherwise its own 501 says so, as a bare llama-server's would.
        return self._post(self._http, path, request, cancellation)

    def healthy(self) -> bool:
        pools = [self._http] if self._embeddings_http is None else [self._http, self._embeddings_http]
        with cancel_after(HEALTH_TIMEOUT_S) as cancellation:
            try:
                for pool in pools:
                    self._call(pool, "GET", "/health", None, cancellation)
            except (GatewayError, JobCancelled):
                return False
        return True

    def models(self) -> list[ModelInfo]:
        props = self._get("/props", Cancellation())
        settings = props.get("default_generation_settings") or {}
        path = props.get("model_path")
        listed = (self._get("/v1/models", Cancellation()).get("data") or [{}])[0]
        meta = listed.get("meta") or {}
        details = {
            "format": "gguf",
            "architecture": self._architecture,
            # llama.cpp names a file type "all F32" or "mostly Q4_K_M"; Ollama, "F32" or "Q4_K_M".
            "quantization": re.sub(r"^(all|mostly) ", "", props.get("model_ftype") or "") or None,
            "size": meta.get("size"),
            "parameters": meta.get("n_params"),
            "context_length": meta.get("n_ctx_train"),
            "embedding_length": meta.get("n_embd"),
            "modified_at": _modified_at(path),
        }
        return [
            ModelInfo(
                id=props.get("model_alias") or listed.get("id") or (Path(path).stem if path else "model"),
                n_ctx=int(settings.get("n_ctx") or 0),
                slots=int(props.get("total_slots") or 1),
                chat_template=props.get("chat_template"),
                general_name=self._general_name,
                path=path,
                embeddings=self._embeddings_http is not None,
                props=props,
                details={key: value for key, value in details.items() if value is not None},
                listing={key: listed[key] for key in _LLAMA_LISTING if key in listed},
            )
        ]

    def _post(self, http: HttpPool, path: str, request: dict[str, Any], cancellation: Cancellation) -> Any:
        return self._call(http, "POST", path, orjson.dumps(request), cancellation)

    def _get(self, path: str, cancellation: Cancellation) -> Any:
        return self._call(self._http, "GET", path, None, cancellation)

    def _call(self, http: HttpPool, method: str, path: str, body: bytes | None, cancellation: Cancellation) -> Any:
        try:
            with http.request(method, path, body, headers=_JSON, cancellation=cancellation) as response:
                if response.status != 200:
                    raise _error_from(response)
                return orjson.loads(response.read())
        except _UNREACHABLE as error:
            cancellation.check()
            raise _unreachable(error) from None


def nested_values(paths: list[str], answer: dict[str, Any]) -> dict[str, Any]:
    """llama-server's ``response_fields``: each ``a/b`` path found in ``answer``, under its path."""
    picked: dict[str, Any] = {}
    for path in paths:
        value: Any = answer
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            picked[path] = value
    return picked


#: llama-server's fields of a /v1/models entry that OpenAI's have not.
_LLAMA_LISTING = ("aliases", "tags", "architecture", "meta")


def _sse_payload(line: bytes) -> bytes | None:
    """The payload of an event stream's ``data:`` line; None for any other line."""
    if line.startswith(b"data: "):
        return line[6:].rstrip(b"\r\n")
    if line.startswith(b"data:"):
        return line[5:].rstrip(b"\r\n")
    return None


def _sse_data(response: http.client.HTTPResponse, cancellation: Cancellation) -> Iterator[bytes]:
    """The ``data:`` payloads of llama-server's event stream, as they arrive."""
    for line in response:
        if (data := _sse_payload(line)) is not None:
            yield data
    cancellation.check()


def _sse_batches(
    response: http.client.HTTPResponse, pool: HttpPool, cancellation: Cancellation
) -> Iterator[list[bytes]]:
    """The ``data:`` payloads of llama-server's event stream in groups, so that the worker writes
    each group to Redis in one call: a payload goes out as soon as it is read, with the whole
    events already received behind it, and never waits for one more to arrive.

    An event ends with a blank line (llama-server writes ``data: <json>\n\n`` as one chunk), and
    the chunked framing between events is CRLFs and sizes, which never make ``\n\n``: so while
    what was received and not read holds a ``\n\n``, a whole event is here, and reading on to it
    cannot block.
    """
    batch: list[bytes] = []
    for line in response:
        if (data := _sse_payload(line)) is not None:
            batch.append(data)
        if batch and b"\n\n" not in pool.received(response):
            yield batch
            batch = []
    if batch:
        yield batch
    cancellation.check()


def _chunk(data: bytes) -> dict[str, Any]:
    chunk: dict[str, Any] = orjson.loads(data)
    if "error" in chunk:
        error = chunk["error"]
        if isinstance(error, dict):
            raise GatewayError.from_event_data(error)
        raise GatewayError(ErrorKind.SERVER, str(error))
    return chunk


def _stream_events(batches: Iterator[list[bytes]]) -> Iterator[list[Event]]:
    """Token events, a list per group of payloads, the last list ending with the result."""
    for batch in batches:
        events: list[Event] = []
        for data in batch:
            try:
                stop = _chunk(data).get("stop")
            except GatewayError:
                if events:  # the tokens read with the error still reach the client, before it
                    yield events
                raise
            if stop:
                events.append(Event(EventType.RESULT, data))
                yield events
                return
            events.append(Event(EventType.TOKEN, data))
        yield events
    raise GatewayError(ErrorKind.SERVER, "llama-server ended the stream without a final chunk")


def _whole_answer(chunks: Iterator[bytes], *, return_tokens: bool) -> Event:
    """The final object llama-server would have sent for the same request without streaming."""
    pieces: list[str] = []
    tokens: list[int] = []
    probabilities: list[Any] = []
    for data in chunks:
        chunk = _chunk(data)
        if not chunk.get("stop"):
            pieces.append(chunk.get("content") or "")
            tokens.extend(chunk.get("tokens") or ())
            probabilities.extend(chunk.get("completion_probabilities") or ())
            continue
        chunk["content"] = "".join(pieces)
        # Not streaming, llama-server fills "tokens" only when asked to (return_tokens).
        chunk["tokens"] = tokens if return_tokens else []
        if probabilities:
            chunk["completion_probabilities"] = probabilities
        settings = chunk.get("generation_settings")
        if isinstance(settings, dict):
            settings["stream"] = False
        # llama-server's final chunk: a GenerationResult's keys, and dozens more that pass through.
        return Event.of(EventType.RESULT, cast(GenerationResult, chunk))
    raise GatewayError(ErrorKind.SERVER, "llama-server ended the stream without a final chunk")


_FINISH_TO_STOP_TYPE: dict[str, StopType] = {"stop": "eos", "length": "limit", "tool_calls": "tool_calls"}


class _ChatStream:
    """Turns llama-server's chat.completion.chunk stream into velesio's token and result events."""

    def __init__(self, stream: bool) -> None:
        self._stream = stream
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._tool_calls: dict[int, ToolCall] = {}
        self._finish_reason = "stop"
        self._usage: dict[str, Any] = {}
        self._timings: Timings = {}
        self._logprobs: list[Any] = []
        self._asked_logprobs = False

    def feed(self, chunk: dict[str, Any]) -> Event | None:
        self._usage = chunk.get("usage") or self._usage
        self._timings = chunk.get("timings") or self._timings
        choices = chunk.get("choices") or ()
        if not choices:
            return None
        choice = choices[0]
        self._finish_reason = choice.get("finish_reason") or self._finish_reason
        delta = choice.get("delta") or {}
        piece: TokenPiece = {}
        if content := delta.get("content"):
            piece["content"] = content
        if reasoning := delta.get("reasoning_content"):
            piece["reasoning_content"] = reasoning
        if tool_calls := delta.get("tool_calls"):
            piece["tool_calls"] = tool_calls
        logprobs: Logprobs | None = choice.get("logprobs")
        if isinstance(logprobs, dict):
            self._asked_logprobs = True
            self._logprobs.extend(logprobs.get("content") or ())
            if piece:
                piece["logprobs"] = logprobs
        if not piece:
            return None
        self._content.append(piece.get("content", ""))
        self._reasoning.append(piece.get("reasoning_content", ""))
        for call in piece.get("tool_calls", ()):
            merge_tool_call(self._tool_calls, call)
        return Event.of(EventType.TOKEN, piece) if self._stream else None

    def result(self) -> Event:
        result: GenerationResult = {
            "content": "" if self._stream else "".join(self._content),
            "stop": True,
            "stop_type": _FINISH_TO_STOP_TYPE.get(self._finish_reason, "eos"),
            "tokens_predicted": self._usage.get("completion_tokens", 0),
            "tokens_evaluated": self._usage.get("prompt_tokens", 0),
            "timings": self._timings,
        }
        reasoning = "".join(self._reasoning)
        if reasoning and not self._stream:
            result["reasoning_content"] = reasoning
        if self._tool_calls and not self._stream:
            result["tool_calls"] = merged_tool_calls(self._tool_calls)
        if self._asked_logprobs and not self._stream:
            result["logprobs"] = {"content": self._logprobs}
        return Event.of(EventType.RESULT, result)


#: Parts of the messages of llama-server's 500s that its input caused (a token id out of the
#: vocabulary, a tool without a type, an input longer than a batch, an image for a model without
#: a vision projector): velesio answers them as the 400s they are, with llama-server's words.
_INPUT_ERRORS_LLAMA_SERVER_CALLS_500 = (
    "_M_range_check",
    "Failed to parse",
    "is too large to process",
    "input is not supported",
)


def _error_from(response: http.client.HTTPResponse) -> GatewayError:
    body = response.read()
    try:
        error = orjson.loads(body)["error"]
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            if response.status == 500 and any(part in message for part in _INPUT_ERRORS_LLAMA_SERVER_CALLS_500):
                return GatewayError(ErrorKind.INVALID_REQUEST, message)
            return GatewayError.from_event_data({"code": response.status, **error})
        message = str(error)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = body[:500].decode("utf-8", "replace") or response.reason
    return GatewayError(ErrorKind.from_llama_type("", response.status), f"llama-server: {message}")


def _unreachable(error: Exception) -> GatewayError:
    log.warning("llama-server is unreachable: %s", error)
    return unavailable("the LLM backend (llama-server) is not reachable; retry shortly", retry_after_s=2)


def _modified_at(path: str | None) -> float | None:
    """When the model file changed (Ollama's modified_at), if it is on this machine."""
    try:
        return Path(path).stat().st_mtime if path else None
    except OSError:
        return None


def _gguf_names(model_file: Path | None) -> tuple[str | None, str | None]:
    """general.name and general.architecture, when the model file is here to read."""
    if model_file is None or not model_file.is_file():
        return None, None
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(model_file))
        fields = [reader.get_field(key) for key in ("general.name", "general.architecture")]
        name, architecture = (field.contents() if field is not None else None for field in fields)
        return name, architecture
    except Exception:  # a file llama-server loads but gguf cannot read: the names are optional
        log.debug("could not read the names in %s", model_file, exc_info=True)
        return None, None
