"""Ollama requests as velesio job payloads (llama.cpp's vocabulary)."""

from __future__ import annotations

from typing import Any

import orjson

from ...errors import invalid_request, not_supported
from ...jobs import JobKind
from .options import SAME_AS_LLAMACPP
from .schemas import ChatRequest, EmbeddingsRequest, EmbedRequest, GenerateRequest, Message, Options, ShowRequest

#: Ollama's option names that llama.cpp's requests take as they are (a seed of -1 included: random).
_SAME = ("seed", *SAME_AS_LLAMACPP)


def sampling(options: Options | None) -> dict[str, Any]:
    """Options in llama.cpp's names. num_predict -1 (forever) is llama.cpp's default: left out."""
    if options is None:
        return {}
    given = options.model_dump(exclude_none=True)
    params = {name: given[name] for name in _SAME if name in given}
    if given.get("num_predict", -1) != -1:
        params["n_predict"] = given["num_predict"]
    if "num_keep" in given:
        params["n_keep"] = given["num_keep"]
    return params


def _refuse_unsupported(request: GenerateRequest | ChatRequest) -> None:
    if isinstance(request, GenerateRequest):
        if request.images:
            raise not_supported("images are not supported: the models velesio serves here read text")
        if request.suffix:
            raise not_supported("suffix (fill-in-the-middle) is not supported")
        if request.template:
            raise not_supported("a per-request template is not supported; the model's own template applies")
        if request.context:
            raise not_supported("context (deprecated) is not supported; send the conversation with /api/chat")
    elif any(message.images for message in request.messages or ()):
        raise not_supported("images are not supported: the models velesio serves here read text")


def _format(format: str | dict[str, Any] | None, *, chat: bool) -> dict[str, Any]:
    if not format:
        return {}
    if format == "json":
        return {"response_format": {"type": "json_object"}} if chat else {"json_schema": {}}
    if isinstance(format, dict):
        if chat:
            return {"response_format": {"type": "json_schema", "json_schema": {"name": "format", "schema": format}}}
        return {"json_schema": format}
    raise invalid_request(f'format: {format!r} is neither "json" nor a JSON schema')


def _chat_sampling(options: Options | None) -> dict[str, Any]:
    params = sampling(options)
    if "n_predict" in params:
        params["max_tokens"] = params.pop("n_predict")
    return params


def _thinking(think: bool | str | None) -> dict[str, Any]:
    # llama.cpp's chat templates take enable_thinking; its levels ("low", ...) have no equal here.
    return {"chat_template_kwargs": {"enable_thinking": False}} if think is False else {}


def _message(message: Message) -> dict[str, Any]:
    converted: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        # Ollama's tool-call arguments are an object; OpenAI's (llama-server's) a JSON string.
        converted["tool_calls"] = [
            {
                "type": "function",
                "function": {
                    "name": (call.get("function") or {}).get("name", ""),
                    "arguments": orjson.dumps((call.get("function") or {}).get("arguments") or {}).decode(),
                },
            }
            for call in message.tool_calls
        ]
    if message.tool_name:
        converted["name"] = message.tool_name
    return converted


def generate_job(request: GenerateRequest) -> tuple[JobKind, dict[str, Any]]:
    """/api/generate: a raw one is a completion of the prompt as it is, else a chat (templated)."""
    if request.raw:
        return JobKind.COMPLETION, completion_payload(request)
    return JobKind.CHAT, chat_payload(request)


def completion_payload(request: GenerateRequest) -> dict[str, Any]:
    """A raw /api/generate: the prompt as it is, no template."""
    _refuse_unsupported(request)
    return {"prompt": request.prompt or "", **sampling(request.options), **_format(request.format, chat=False)}


def chat_payload(request: GenerateRequest | ChatRequest) -> dict[str, Any]:
    """/api/chat, or a templated /api/generate (its prompt is the user's message)."""
    _refuse_unsupported(request)
    if isinstance(request, GenerateRequest):
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": request.prompt or ""})
    else:
        messages = [_message(message) for message in request.messages or ()]
        if not messages:
            raise invalid_request("messages: send at least one message")
    payload = {"messages": messages, **_chat_sampling(request.options), **_format(request.format, chat=True)}
    if isinstance(request, ChatRequest) and request.tools:
        payload["tools"] = request.tools
    return {**payload, **_thinking(request.think)}


def embed_payload(request: EmbedRequest) -> dict[str, Any]:
    if request.dimensions is not None:
        raise not_supported("dimensions is not supported: the model's embeddings have a fixed size")
    return {"input": request.input}


def legacy_embeddings_payload(request: EmbeddingsRequest) -> dict[str, Any]:
    return {"input": request.prompt}


def shown_model(request: ShowRequest) -> str:
    """The model /api/show asks about: ``model``, or ``name`` as older clients send it."""
    name = request.model or request.name
    if not name:
        raise invalid_request("model: name the model to show")
    return name


def unloads(keep_alive: object) -> bool:
    """A request with nothing to generate and ``keep_alive`` 0 asks Ollama to unload the model."""
    return keep_alive in (0, "0", "0s")
