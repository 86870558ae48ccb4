"""How a worker serves a custom backend: found by RUN_BACKEND, wrapped as the LLM backend the job
runner already drives, so it gets the same queues, cancellation, timeouts, metrics and dialects as
llama-server and Ollama."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from ..backends.base import ModelInfo
from ..cancellation import Cancellation
from ..errors import ErrorKind, GatewayError, invalid_request, not_supported
from ..events import Event, EventType
from ..results import GenerationResult, StopType
from ..settings import SettingsError
from .protocol import (
    REQUIRED,
    Capability,
    Embeds,
    Generates,
    GenerationRequest,
    JobContext,
    TextBackend,
    Tokenizes,
)

#: The entry-point group where installed packages name their backends.
ENTRY_POINT_GROUP = "velesio.backends"


def _refused(problem: str, fix: str) -> SettingsError:
    return SettingsError("RUN_BACKEND", problem, fix)


def load_backend(spec: str) -> TextBackend:
    """Make the backend RUN_BACKEND names: ``package.module:Class`` or an entry-point name of
    the ``velesio.backends`` group. Raises SettingsError, naming RUN_BACKEND, on any problem."""
    factory = _factory(spec)
    try:
        backend: TextBackend = factory()
    except SettingsError:
        raise
    except Exception as error:
        raise _refused(f"{spec} failed to start: {error}", "see the backend's documentation") from error
    _check(spec, backend)
    return backend


def _factory(spec: str) -> Any:
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise _refused(f"cannot import {module_name} ({error})", "install the backend's package") from None
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise _refused(f"{module_name} has no {attribute}", "check the name after the colon") from None
    found = entry_points(group=ENTRY_POINT_GROUP, name=spec)
    if not found:
        known = sorted(point.name for point in entry_points(group=ENTRY_POINT_GROUP)) or ["none installed"]
        raise _refused(
            f"no backend named {spec!r} in the {ENTRY_POINT_GROUP} entry points ({', '.join(known)})",
            "install its package, or give package.module:Class",
        )
    return next(iter(found)).load()


def _check(spec: str, backend: object) -> None:
    capabilities = getattr(backend, "capabilities", None)
    if not isinstance(capabilities, frozenset | set) or not capabilities:
        raise _refused(f"{spec} declares no capabilities", "set capabilities to a frozenset of Capability")
    for capability in capabilities:
        protocol = REQUIRED[Capability(capability)]
        if not isinstance(backend, protocol):
            raise _refused(f"{spec} declares {capability} but has no {protocol.__name__} methods", "add them")
    if not backend.models():  # type: ignore[attr-defined]
        raise _refused(f"{spec} serves no model", "return at least one ModelInfo from models()")


def render_chat(messages: list[dict[str, Any]]) -> str:
    """A chat as plain text, for a backend with no chat template: one ``role: text`` line per
    message, then ``assistant:``."""
    lines = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # OpenAI's parts: the text ones
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        lines.append(f"{message.get('role', 'user')}: {content or ''}")
    return "\n".join([*lines, "assistant:"])


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many characters at the end of ``text`` may be the start of a stop word, so are not sent yet."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class PluginLlmBackend:
    """A custom backend as an :class:`~velesio_core.backends.base.LlmBackend`."""

    def __init__(self, plugin: TextBackend) -> None:
        self.plugin = plugin
        self.capabilities = frozenset(Capability(capability) for capability in plugin.capabilities)

    def _require(self, capability: Capability, what: str) -> None:
        if capability not in self.capabilities:
            raise not_supported(f"this model's backend does not support {what}")

    def complete(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        self._require(Capability.COMPLETION, "completions")
        prompt = request.get("prompt", "")
        if not isinstance(prompt, str):
            prompt = self._prompt_text(prompt, model)
        generation = self._request(model, prompt, None, request, request.get("n_predict"))
        return ([event] for event in self._generate(generation, stream, cancellation))

    def chat(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        self._require(Capability.CHAT, "chat")
        if request.get("tools"):
            raise not_supported("this model's backend does not support tools")
        messages = list(request.get("messages") or [])
        generation = self._request(model, render_chat(messages), messages, request, request.get("max_tokens"))
        return ([event] for event in self._generate(generation, stream, cancellation))

    def _prompt_text(self, prompt: list[Any], model: str) -> str:
        if Capability.TOKENIZE not in self.capabilities:
            raise invalid_request("this model's backend takes the prompt as text, not token ids")
        plugin = self.plugin
        assert isinstance(plugin, Tokenizes)
        return "".join(part if isinstance(part, str) else plugin.detokenize([part], model=model) for part in prompt)

    @staticmethod
    def _request(
        model: str, prompt: str, messages: list[dict[str, Any]] | None, payload: dict[str, Any], limit: Any
    ) -> GenerationRequest:
        stop = payload.get("stop") or ()
        temperature = payload.get("temperature")
        seed = payload.get("seed")
        return GenerationRequest(
            model=model,
            prompt=prompt,
            messages=messages,
            max_tokens=limit if isinstance(limit, int) and limit > 0 else None,
            temperature=float(temperature) if isinstance(temperature, int | float) else None,
            seed=seed if isinstance(seed, int) and seed >= 0 else None,
            stop=(stop,) if isinstance(stop, str) else tuple(str(word) for word in stop),
            payload=payload,
        )

    def _generate(self, request: GenerationRequest, stream: bool, cancellation: Cancellation) -> Iterator[Event]:
        plugin = self.plugin
        assert isinstance(plugin, Generates)
        progress: list[Event] = []
        context = JobContext(cancellation, progress.append)
        started = time.perf_counter()
        text, sent, count = "", 0, 0
        stop_type: StopType = "eos"
        pieces = iter(plugin.generate(request, context))
        try:
            for piece in pieces:
                context.check()
                yield from progress
                progress.clear()
                count += 1
                text += piece
                cut = min((index for word in request.stop if (index := text.find(word)) >= 0), default=-1)
                if cut >= 0:
                    text, stop_type = text[:cut], "word"
                elif request.max_tokens is not None and count >= request.max_tokens:
                    stop_type = "limit"
                if stream:
                    ready = len(text) if stop_type != "eos" else len(text) - _held_back(text, request.stop)
                    if ready > sent:
                        yield Event.of(EventType.TOKEN, {"content": text[sent:ready], "stop": False})
                        sent = ready
                if stop_type != "eos":
                    break
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        context.check()
        yield from progress
        if stream and len(text) > sent:
            yield Event.of(EventType.TOKEN, {"content": text[sent:], "stop": False})
        elapsed_ms = (time.perf_counter() - started) * 1000
        result: GenerationResult = {
            "content": "" if stream else text,
            "stop": True,
            "stop_type": stop_type,
            "tokens_predicted": count,
            "tokens_evaluated": self._count_tokens(request),
            "timings": {"predicted_n": count, "predicted_ms": elapsed_ms},
        }
        yield Event.of(EventType.RESULT, result)

    def _count_tokens(self, request: GenerationRequest) -> int:
        plugin = self.plugin
        if isinstance(plugin, Tokenizes) and Capability.TOKENIZE in self.capabilities:
            return len(plugin.tokenize(request.prompt, model=request.model))
        return len(request.prompt.split())

    def tokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        self._require(Capability.TOKENIZE, "tokenize")
        plugin = self.plugin
        assert isinstance(plugin, Tokenizes)
        ids = plugin.tokenize(str(request.get("content", "")), model=model)
        if request.get("with_pieces"):
            return {"tokens": [{"id": id_, "piece": plugin.detokenize([id_], model=model)} for id_ in ids]}
        return {"tokens": ids}

    def detokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        self._require(Capability.TOKENIZE, "detokenize")
        plugin = self.plugin
        assert isinstance(plugin, Tokenizes)
        return {"content": plugin.detokenize(list(request.get("tokens") or []), model=model)}

    def apply_template(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        self._require(Capability.CHAT, "chat templates")
        return {"prompt": render_chat(list(request.get("messages") or []))}

    def embeddings(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        self._require(Capability.EMBEDDINGS, "embeddings")
        plugin = self.plugin
        assert isinstance(plugin, Embeds)
        content = request.get("content", request.get("input"))
        texts = [content] if isinstance(content, str) else list(content or [])
        if not all(isinstance(text, str) for text in texts):
            raise invalid_request("this model's backend embeds text, not token ids")
        vectors = plugin.embed(texts, model=model, context=JobContext(cancellation))
        if len(vectors) != len(texts):
            raise GatewayError(ErrorKind.SERVER, "the backend returned a vector count unlike the input's")
        return {"embeddings": vectors, "prompt_tokens": sum(len(text.split()) for text in texts)}

    def slots(self, *, model: str, cancellation: Cancellation) -> Any:
        return []

    def endpoint(self, path: str, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        raise not_supported(f"this model's backend does not support {path}: only llama-server answers it")

    def models(self) -> list[ModelInfo]:
        return list(self.plugin.models())

    def healthy(self) -> bool:
        check = getattr(self.plugin, "healthy", None)
        return bool(check()) if callable(check) else True

    def close(self) -> None:
        self.plugin.close()


class PluginService:
    """A custom backend as the worker's LLM service (see backends/service.py)."""

    def __init__(self, backend: PluginLlmBackend) -> None:
        self.backend = backend

    @classmethod
    def start(cls, spec: str) -> PluginService:
        return cls(PluginLlmBackend(load_backend(spec)))

    def models(self) -> list[ModelInfo]:
        return self.backend.models()

    @property
    def restarts(self) -> int:
        return 0

    def restart_hung(self) -> None:
        """A plugin runs inside the worker: nothing here to restart; its stalled jobs still end."""

    def close(self) -> None:
        self.backend.close()
