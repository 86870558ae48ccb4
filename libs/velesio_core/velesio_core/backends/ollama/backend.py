"""The Ollama backend: velesio's jobs through the official ``ollama`` client.

Requests arrive in llama.cpp's vocabulary (a /completion body, an OpenAI-style chat body) and are
translated to Ollama's; what Ollama truly cannot do is a 501 naming it, never something made up:
Ollama has no tokenizer, template or slot API, takes no token-id prompts, and has no GBNF grammars
or per-token probabilities. Every request asks for ``num_ctx`` = LLAMA_CTX, so the context size
velesio reports (``/props``) is the one the model really runs with.

Cancellation: the client's stream is closed at the next chunk after a cancel; Ollama stops the
generation when its client goes. (While Ollama evaluates a long prompt no chunk comes, and a
cancel waits for the first token: the official client offers no way to reach its socket.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import httpx
import ollama
import orjson

from ...cancellation import Cancellation
from ...dialects.ollama.options import SAME_AS_LLAMACPP
from ...errors import ErrorKind, GatewayError, not_supported, unavailable
from ...events import Event, EventType
from ...results import GenerationResult, StopType, TokenPiece, ToolCall
from ..base import HEALTH_TIMEOUT_S, ModelInfo

log = logging.getLogger(__name__)

#: A chunk of Ollama's stream: /api/generate's or /api/chat's.
_Chunk = TypeVar("_Chunk", ollama.GenerateResponse, ollama.ChatResponse)
#: What a chunk adds to the answer: its piece, and the tool calls in it (whole: Ollama sends each
#: call in one chunk).
_Part = tuple[TokenPiece, list[ToolCall]]

_NOT_SUPPORTED = {
    "grammar": "GBNF grammars need llama-server",
    "n_probs": "token probabilities need llama-server",
    "logit_bias": "logit_bias needs llama-server",
    "return_tokens": "token ids need llama-server",
    "logprobs": "logprobs need llama-server",
}


class OllamaBackend:
    def __init__(self, url: str, *, api_key: str | None, ctx: int, slots: int) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._client = ollama.Client(host=url, headers=headers, timeout=httpx.Timeout(30.0, read=None))
        self._health = httpx.Client(base_url=url, headers=headers, timeout=HEALTH_TIMEOUT_S)
        self._ctx = ctx
        self._slots = slots

    def close(self) -> None:
        self._client.close()
        self._health.close()

    def healthy(self) -> bool:
        try:
            return self._health.get("/api/version").status_code == 200
        except httpx.HTTPError:
            return False

    def complete(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        prompt = request.get("prompt")
        if not isinstance(prompt, str):
            raise not_supported("the Ollama backend takes a text prompt, not token ids")
        _refuse_unsupported(request)
        with _ollama_errors():
            chunks = self._client.generate(
                model=model,
                prompt=prompt,
                raw=True,
                stream=True,
                options=self._options(request, "n_predict"),
                format=_format(request),
            )
        # One event per list: the official client gives no way to see what else has arrived.
        for event in _events(chunks, cancellation, stream=stream, part=_completion_part):
            yield [event]

    def chat(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        _refuse_unsupported(request)
        think = None
        if (request.get("chat_template_kwargs") or {}).get("enable_thinking") is False:
            think = False
        with _ollama_errors():
            chunks = self._client.chat(
                model=model,
                messages=[_message(m) for m in request.get("messages") or ()],
                tools=request.get("tools"),
                stream=True,
                think=think,
                options=self._options(request, "max_tokens"),
                format=_format(request),
            )
        for event in _events(chunks, cancellation, stream=stream, part=_chat_part):
            yield [event]

    def tokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        raise not_supported("the Ollama backend cannot tokenize: Ollama has no tokenizer API")

    def detokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        raise not_supported("the Ollama backend cannot detokenize: Ollama has no tokenizer API")

    def apply_template(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        raise not_supported("the Ollama backend cannot apply a template alone: Ollama has no API for it")

    def slots(self, *, model: str, cancellation: Cancellation) -> Any:
        raise not_supported("the Ollama backend has no slots to show: Ollama has no API for them")

    def endpoint(self, path: str, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        raise not_supported(f"the Ollama backend cannot answer {path}: Ollama has no such API (llama-server has)")

    def embeddings(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        text = request.get("input", request.get("content"))
        if not (isinstance(text, str) or (isinstance(text, list) and all(isinstance(t, str) for t in text))):
            raise not_supported("the Ollama backend embeds text, not token ids")
        with _ollama_errors():
            answer = self._client.embed(model=model, input=text, options={"num_ctx": self._ctx})
        return {"embeddings": [list(vector) for vector in answer.embeddings], "prompt_tokens": answer.prompt_eval_count}

    def models(self) -> list[ModelInfo]:
        with _ollama_errors():
            listed = self._client.list()
        return [self._model_info(entry.model) for entry in listed.models if entry.model]

    def _model_info(self, name: str) -> ModelInfo:
        with _ollama_errors():
            shown = self._client.show(name)
        info = dict(shown.modelinfo or {})
        architecture = info.get("general.architecture")
        details = shown.details
        facts = {
            "format": details.format if details else None,
            "architecture": architecture or (details.family if details else None),
            "quantization": details.quantization_level if details else None,
            "parameters": info.get("general.parameter_count"),
            "context_length": info.get(f"{architecture}.context_length"),
            "embedding_length": info.get(f"{architecture}.embedding_length"),
        }
        props = {
            "default_generation_settings": {"n_ctx": self._ctx},
            "total_slots": self._slots,
            "model_path": name,
            "chat_template": shown.template or "",
        }
        return ModelInfo(
            id=name,
            n_ctx=self._ctx,
            slots=self._slots,
            chat_template=shown.template,
            general_name=info.get("general.name"),
            embeddings="embedding" in (shown.capabilities or ()),
            props=props,
            details={key: value for key, value in facts.items() if value is not None},
        )

    def _options(self, request: dict[str, Any], length_key: str) -> dict[str, Any]:
        options: dict[str, Any] = {name: request[name] for name in SAME_AS_LLAMACPP if name in request}
        options["num_ctx"] = self._ctx
        if request.get(length_key) not in (None, -1):
            options["num_predict"] = request[length_key]
        if request.get("seed", -1) != -1:
            options["seed"] = request["seed"]
        if "n_keep" in request:
            options["num_keep"] = request["n_keep"]
        return options


@contextmanager
def _ollama_errors() -> Iterator[None]:
    """Ollama's failures, as the errors its clients should see."""
    try:
        yield
    except ollama.ResponseError as error:
        raise _error_from(error) from None
    except (ConnectionError, httpx.TransportError) as error:
        raise _unreachable(error) from None


def _refuse_unsupported(request: dict[str, Any]) -> None:
    for field, reason in _NOT_SUPPORTED.items():
        if request.get(field):
            raise not_supported(f"{field} is not supported by the Ollama backend: {reason}")


def _format(request: dict[str, Any]) -> Literal["json"] | dict[str, Any] | None:
    """llama.cpp's json_schema or OpenAI's response_format, as Ollama's ``format``."""
    if "json_schema" in request:
        return request["json_schema"] or "json"
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_object":
        return "json"
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or "json"
    return None


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style message as Ollama's: text content, tool-call arguments as objects."""
    content = message.get("content")
    if isinstance(content, list):
        if any(part.get("type") != "text" for part in content):
            raise not_supported("the Ollama backend here takes text messages only")
        content = "".join(part.get("text", "") for part in content)
    converted: dict[str, Any] = {"role": message.get("role"), "content": content or ""}
    if message.get("tool_calls"):
        converted["tool_calls"] = [
            {"function": {"name": call["function"]["name"], "arguments": _arguments(call["function"].get("arguments"))}}
            for call in message["tool_calls"]
        ]
    if message.get("role") == "tool" and message.get("name"):
        converted["tool_name"] = message["name"]
    return converted


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise GatewayError(ErrorKind.INVALID_REQUEST, "tool call arguments must be JSON") from None
    return arguments or {}


def _completion_part(chunk: ollama.GenerateResponse) -> _Part:
    return {"content": chunk.response or ""}, []


def _chat_part(chunk: ollama.ChatResponse) -> _Part:
    message = chunk.message
    piece: TokenPiece = {"content": message.content or ""}
    if message.thinking:
        piece["reasoning_content"] = message.thinking
    calls: list[ToolCall] = [
        {
            "index": index,
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": call.function.name, "arguments": orjson.dumps(call.function.arguments).decode()},
        }
        for index, call in enumerate(message.tool_calls or ())
    ]
    if calls:
        # Each one whole: the only delta of its call.
        piece["tool_calls"] = [{**call, "function": {**call["function"]}} for call in calls]
    return piece, calls


def _events(
    chunks: Iterator[_Chunk], cancellation: Cancellation, *, stream: bool, part: Callable[[_Chunk], _Part]
) -> Iterator[Event]:
    """Ollama's chunks as velesio's token events and one result in llama.cpp's vocabulary."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    try:
        for chunk in chunks:
            cancellation.check()
            if chunk.done:
                yield Event.of(EventType.RESULT, _result(chunk, stream, content, reasoning, calls))
                return
            piece, whole_calls = part(chunk)
            content.append(piece.get("content", ""))
            reasoning.append(piece.get("reasoning_content", ""))
            calls.extend(whole_calls)
            if stream and any(piece.values()):
                yield Event.of(EventType.TOKEN, {**piece, "tokens": [], "stop": False})
    except ollama.ResponseError as error:
        raise _error_from(error) from None
    except (ConnectionError, httpx.TransportError) as error:
        cancellation.check()
        raise _unreachable(error) from None
    finally:
        # The client's stream is a generator (its types say Iterator): closing it closes the
        # connection, which is what stops Ollama's generation.
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    raise GatewayError(ErrorKind.SERVER, "the Ollama server ended the stream without a final chunk")


def _result(
    chunk: ollama.GenerateResponse | ollama.ChatResponse,
    stream: bool,
    content: list[str],
    reasoning: list[str],
    calls: list[ToolCall],
) -> GenerationResult:
    prompt_ms = (chunk.prompt_eval_duration or 0) / 1e6
    predicted_ms = (chunk.eval_duration or 0) / 1e6
    stop_type: StopType = "limit" if chunk.done_reason == "length" else ("tool_calls" if calls else "eos")
    result: GenerationResult = {
        "content": "" if stream else "".join(content),
        "tokens": [],
        "stop": True,
        "stop_type": stop_type,
        "tokens_predicted": chunk.eval_count or 0,
        "tokens_evaluated": chunk.prompt_eval_count or 0,
        "timings": {
            "prompt_n": chunk.prompt_eval_count or 0,
            "prompt_ms": prompt_ms,
            "predicted_n": chunk.eval_count or 0,
            "predicted_ms": predicted_ms,
        },
    }
    if not stream:
        if "".join(reasoning):
            result["reasoning_content"] = "".join(reasoning)
        if calls:
            result["tool_calls"] = calls
    return result


def _error_from(error: ollama.ResponseError) -> GatewayError:
    status = error.status_code if isinstance(error.status_code, int) and error.status_code >= 400 else 500
    kind = ErrorKind.from_llama_type("", status)
    return GatewayError(kind, f"Ollama: {error.error}")


def _unreachable(error: Exception) -> GatewayError:
    log.warning("the Ollama server is unreachable: %s", error)
    return unavailable("the LLM backend (Ollama) is not reachable; retry shortly", retry_after_s=2)
