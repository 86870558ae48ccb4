"""Ollama requests as velesio job payloads (llama.cpp's vocabulary)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import orjson

from ...backends.base import ModelInfo
from ...errors import invalid_request, not_supported
from . import capabilities, template
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


def check(request: GenerateRequest | ChatRequest, model: ModelInfo) -> None:
    """Refuse, as Ollama or llama-server would, what the model cannot do or velesio does not."""
    images = request.images if isinstance(request, GenerateRequest) else None
    if not images and isinstance(request, ChatRequest):
        images = [image for message in request.messages or () for image in message.images or ()]
    if images and not capabilities.vision(model):
        # llama-server's words (it answers them with a 500); a 400, as Ollama answers it.
        raise invalid_request(
            f'"{model.id}" does not support images: image input is not supported - hint: if this is '
            "unexpected, you may need to provide the mmproj"
        )
    if request.think and not capabilities.thinking(model):
        raise invalid_request(f'"{model.id}" does not support thinking')
    # Before the templated generate's render and tokenize jobs, not after them.
    _format(request.format, chat=isinstance(request, ChatRequest))
    if isinstance(request, GenerateRequest):
        if request.suffix:
            raise not_supported("suffix (fill-in-the-middle) is not supported")
        if request.context and images:
            raise not_supported("context with images is not supported; send the conversation with /api/chat")


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
    """``think`` as the chat template's switches (Ollama's levels are gpt-oss's reasoning_effort)."""
    if think is None:
        return {}
    kwargs: dict[str, Any] = {"enable_thinking": think is not False}
    if isinstance(think, str):
        kwargs["reasoning_effort"] = think
    return {"chat_template_kwargs": kwargs}


def _logprobs(request: GenerateRequest | ChatRequest, *, chat: bool) -> dict[str, Any]:
    if not request.logprobs:
        return {}
    # llama-server gives no probabilities at all for 0 alternatives, where Ollama gives the chosen
    # token's: ask for one at least (the encoder keeps as many as the client asked for).
    top = max(request.top_logprobs or 0, 1)
    return {"logprobs": True, "top_logprobs": top} if chat else {"n_probs": top}


def top_logprobs(request: GenerateRequest | ChatRequest) -> int | None:
    """How many alternatives each logprob lists, or None when logprobs are not asked for."""
    return (request.top_logprobs or 0) if request.logprobs else None


def _image_part(image: str) -> dict[str, Any]:
    # Ollama's images are bare base64; llama-server's (OpenAI's) image parts are data URLs.
    mime = next((kind for prefix, kind in _IMAGE_MAGIC if image.startswith(prefix)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{image}"}}


_IMAGE_MAGIC = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def _content(text: str, images: list[str] | None) -> str | list[dict[str, Any]]:
    if not images:
        return text
    return [{"type": "text", "text": text}, *(_image_part(image) for image in images)]


def _message(message: Message) -> dict[str, Any]:
    converted: dict[str, Any] = {"role": message.role, "content": _content(message.content or "", message.images)}
    if message.thinking and message.role == "assistant":
        converted["reasoning_content"] = message.thinking
    if message.tool_calls:
        # Ollama's tool-call arguments are an object; OpenAI's (llama-server's) a JSON string.
        converted["tool_calls"] = [
            {
                "type": "function",
                "id": call.get("id") or f"call_{index}",
                "function": {
                    "name": (call.get("function") or {}).get("name", ""),
                    "arguments": orjson.dumps((call.get("function") or {}).get("arguments") or {}).decode(),
                },
            }
            for index, call in enumerate(message.tool_calls)
        ]
    if message.tool_name:
        converted["name"] = message.tool_name
    if message.tool_call_id:
        converted["tool_call_id"] = message.tool_call_id
    return converted


class GenerateRoute(Enum):
    """How an /api/generate runs on llama-server."""

    #: ``raw``: a completion of the prompt as it is (after the ``context`` tokens, if any).
    RAW = "raw"
    #: Templated, then tokenized, then completed as tokens: the answer carries ``context``.
    TOKENS = "tokens"
    #: A one-message chat: llama-server's chat parser splits the thinking out (``think``) and
    #: reads images; no ``context`` comes back.
    CHAT = "chat"


def generate_route(request: GenerateRequest) -> GenerateRoute:
    if request.raw:
        return GenerateRoute.RAW
    if request.images or (request.think and not request.context and not request.template):
        return GenerateRoute.CHAT
    return GenerateRoute.TOKENS


def _user_messages(request: GenerateRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}] if request.system else []
    messages.append({"role": "user", "content": _content(request.prompt or "", request.images)})
    return messages


def template_payload(request: GenerateRequest) -> dict[str, Any]:
    """/apply-template's body: the prompt (and system) as the model's template renders them."""
    return {"messages": _user_messages(request), **_thinking(request.think)}


def own_template_prompt(request: GenerateRequest) -> str | None:
    """The prompt rendered with the request's own ``template``, if it has one."""
    if not request.template:
        return None
    return template.render(request.template, {"System": request.system or "", "Prompt": request.prompt or ""})


def tokenize_payload(request: GenerateRequest, prompt: str) -> dict[str, Any]:
    # A conversation's first turn starts with the model's BOS; a later one continues the context.
    return {"content": prompt, "add_special": not request.context}


#: Ollama's num_keep: the tokens of a prompt's start that survive its truncation.
DEFAULT_NUM_KEEP = 4


def truncated_prompt(tokens: list[int], *, n_ctx: int, options: Options | None) -> list[int]:
    """A prompt over the context, cut as Ollama's runner cuts it: its first ``num_keep`` tokens,
    then the latest ones that fit. Ollama then shifts its context as it generates; llama-server
    does not, so room is left for the answer: ``num_predict`` tokens (at most half the context),
    else a quarter of it."""
    keep = options.num_keep if options is not None and options.num_keep is not None else DEFAULT_NUM_KEEP
    keep = max(keep, 0)
    predict = options.num_predict if options is not None and options.num_predict else 0
    room = min(predict, n_ctx // 2) if predict > 0 else n_ctx // 4
    fits = max(keep + 1, n_ctx - room)
    if len(tokens) <= fits:
        return tokens
    return tokens[:keep] + tokens[len(tokens) - (fits - keep) :]


def completion_payload(request: GenerateRequest, prompt: str | list[int]) -> dict[str, Any]:
    """A completion of ``prompt``: text (after the ``context`` tokens, if any), or all tokens."""
    # llama-server's mixed prompts: token ids, then text that it tokenizes.
    mixed = [*request.context, prompt] if isinstance(prompt, str) and request.context else prompt
    payload = {"prompt": mixed, **sampling(request.options), **_format(request.format, chat=False)}
    return {**payload, **_logprobs(request, chat=False), "return_tokens": not request.raw}


def chat_payload(request: GenerateRequest | ChatRequest) -> dict[str, Any]:
    """/api/chat, or an /api/generate run as a one-message chat."""
    if isinstance(request, GenerateRequest):
        messages = _user_messages(request)
    else:
        messages = [_message(message) for message in request.messages or ()]
        if not messages:
            raise invalid_request("messages: send at least one message")
    payload = {"messages": messages, **_chat_sampling(request.options), **_format(request.format, chat=True)}
    if isinstance(request, ChatRequest) and request.tools:
        payload["tools"] = request.tools
    return {**payload, **_thinking(request.think), **_logprobs(request, chat=True)}


def conversation_payload(request: ChatRequest) -> dict[str, Any]:
    """What a chat's prompt is rendered from: its messages, tools and thinking, no sampling."""
    payload: dict[str, Any] = {"messages": [_message(message) for message in request.messages or ()]}
    if request.tools:
        payload["tools"] = request.tools
    return {**payload, **_thinking(request.think)}


def truncated(request: ChatRequest, start: int) -> ChatRequest:
    """The chat as Ollama truncates one that overflows the context (server/prompt.go,
    chatPrompt): the system messages before ``start``, then every message from ``start`` on."""
    messages = request.messages or []
    kept = [message for message in messages[:start] if message.role == "system"] + messages[start:]
    return request.model_copy(update={"messages": kept})


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
