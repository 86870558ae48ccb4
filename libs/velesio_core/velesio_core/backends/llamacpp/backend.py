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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ...cancellation import Cancellation
from ...errors import ErrorKind, GatewayError, not_supported, unavailable
from ...events import Event, EventType
from ...http_pool import HttpPool
from ..base import ModelInfo

log = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json"}
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
        self._general_name = _gguf_general_name(model_file)

    def close(self) -> None:
        self._http.close()
        if self._embeddings_http is not None:
            self._embeddings_http.close()

    def complete(self, request: dict[str, Any], *, stream: bool, cancellation: Cancellation) -> Iterator[Event]:
        body = orjson.dumps({**request, "stream": True})
        try:
            with self._http.request("POST", "/completion", body, headers=_JSON, cancellation=cancellation) as response:
                if response.status != 200:
                    raise _error_from(response)
                chunks = _sse_data(response, cancellation)
                if stream:
                    yield from _stream_events(chunks)
                else:
                    yield _whole_answer(chunks, return_tokens=bool(request.get("return_tokens")))
        except _UNREACHABLE as error:
            cancellation.check()
            raise _unreachable(error) from None

    def tokenize(self, request: dict[str, Any], cancellation: Cancellation) -> Any:
        return self._post(self._http, "/tokenize", request, cancellation)

    def detokenize(self, request: dict[str, Any], cancellation: Cancellation) -> Any:
        return self._post(self._http, "/detokenize", request, cancellation)

    def apply_template(self, request: dict[str, Any], cancellation: Cancellation) -> Any:
        return self._post(self._http, "/apply-template", request, cancellation)

    def embeddings(self, request: dict[str, Any], cancellation: Cancellation) -> Any:
        if self._embeddings_http is None:
            raise not_supported("embeddings are turned off on this worker (LLAMA_EMBEDDINGS=false)")
        return self._post(self._embeddings_http, "/embeddings", request, cancellation)

    def slots(self, cancellation: Cancellation) -> Any:
        return self._get("/slots", cancellation)

    def model_info(self) -> ModelInfo:
        props = self._get("/props", Cancellation())
        settings = props.get("default_generation_settings") or {}
        path = props.get("model_path")
        return ModelInfo(
            id=props.get("model_alias") or (Path(path).stem if path else "model"),
            n_ctx=int(settings.get("n_ctx") or 0),
            slots=int(props.get("total_slots") or 1),
            chat_template=props.get("chat_template"),
            general_name=self._general_name,
            path=path,
            embeddings=self._embeddings_http is not None,
            props=props,
        )

    def healthy(self) -> bool:
        try:
            with self._http.request("GET", "/health") as response:
                response.read()
                return response.status == 200
        except _UNREACHABLE:
            return False

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


def _sse_data(response: http.client.HTTPResponse, cancellation: Cancellation) -> Iterator[bytes]:
    """The ``data:`` payloads of llama-server's event stream, as they arrive."""
    for line in response:
        if line.startswith(b"data: "):
            yield line[6:].rstrip(b"\r\n")
        elif line.startswith(b"data:"):
            yield line[5:].rstrip(b"\r\n")
    cancellation.check()


def _chunk(data: bytes) -> dict[str, Any]:
    chunk = orjson.loads(data)
    if "error" in chunk:
        error = chunk["error"]
        if isinstance(error, dict):
            raise GatewayError.from_event_data(error)
        raise GatewayError(ErrorKind.SERVER, str(error))
    return chunk


def _stream_events(chunks: Iterator[bytes]) -> Iterator[Event]:
    for data in chunks:
        if _chunk(data).get("stop"):
            yield Event(EventType.RESULT, data)
            return
        yield Event(EventType.TOKEN, data)
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
        return Event.of(EventType.RESULT, chunk)
    raise GatewayError(ErrorKind.SERVER, "llama-server ended the stream without a final chunk")


def _error_from(response: http.client.HTTPResponse) -> GatewayError:
    body = response.read()
    try:
        error = orjson.loads(body)["error"]
        if isinstance(error, dict):
            return GatewayError.from_event_data({"code": response.status, **error})
        message = str(error)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = body[:500].decode("utf-8", "replace") or response.reason
    return GatewayError(ErrorKind.from_llama_type("", response.status), f"llama-server: {message}")


def _unreachable(error: Exception) -> GatewayError:
    log.warning("llama-server is unreachable: %s", error)
    return unavailable("the LLM backend (llama-server) is not reachable; retry shortly", retry_after_s=2)


def _gguf_general_name(model_file: Path | None) -> str | None:
    if model_file is None or not model_file.is_file():
        return None
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(model_file)).get_field("general.name")
        return field.contents() if field is not None else None
    except Exception:  # a file llama-server loads but gguf cannot read: the name is optional
        log.debug("could not read general.name from %s", model_file, exc_info=True)
        return None
