"""Request schemas of llama.cpp's native API, as LLM for Unity and llama.cpp clients send it.

Strict on types and bounds (a string where a number belongs is a 400, never coerced), permissive
on unknown fields: LLM for Unity v2 sends fields llama.cpp dropped long ago (``tfs_z``,
``penalize_nl``, ``penalty_prompt``, an always-empty ``messages``), LlamaLib v2 adds ``stream`` to
every body, and llama.cpp grows new options faster than any gateway. Unknown fields travel to
llama-server untouched, which ignores what it does not know.

Every option defaults to "not sent", so llama-server's own defaults apply, as they would if the
client spoke to it directly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
TokenId = Annotated[int, Field(ge=0, lt=2**31)]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class LoraAdapter(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    id: Annotated[int, Field(ge=0)]
    scale: float


class CompletionRequest(_Request):
    """POST /completion (llama.cpp tools/server README, and LLM for Unity's ChatRequest)."""

    prompt: str | dict[str, Any] | list[int | str | dict[str, Any] | list[int | str]] = Field(
        description="A string, token ids, a mix of both, a multimodal object (prompt_string, multimodal_data), "
        "or several of these (one answer each, as an array)."
    )
    stream: bool | None = None
    n_predict: Annotated[int, Field(ge=-2)] | None = Field(None, description="-1: until a stop; 0: only evaluate")
    temperature: NonNegative | None = None
    dynatemp_range: NonNegative | None = None
    dynatemp_exponent: NonNegative | None = None
    top_k: int | None = None
    top_p: Probability | None = None
    min_p: Probability | None = None
    typical_p: Probability | None = None
    xtc_probability: Probability | None = None
    xtc_threshold: Probability | None = None
    n_keep: Annotated[int, Field(ge=-1)] | None = None
    n_indent: Annotated[int, Field(ge=0)] | None = None
    n_cache_reuse: Annotated[int, Field(ge=0)] | None = None
    stop: Annotated[list[str], Field(max_length=64)] | None = None
    repeat_penalty: NonNegative | None = None
    repeat_last_n: Annotated[int, Field(ge=-1)] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    dry_multiplier: NonNegative | None = None
    dry_base: NonNegative | None = None
    dry_allowed_length: Annotated[int, Field(ge=0)] | None = None
    dry_penalty_last_n: Annotated[int, Field(ge=-1)] | None = None
    dry_sequence_breakers: list[str] | None = None
    mirostat: Annotated[int, Field(ge=0, le=2)] | None = Field(None, description="0: off, 1: Mirostat, 2: Mirostat 2.0")
    mirostat_tau: NonNegative | None = None
    mirostat_eta: NonNegative | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | None = Field(None, description="A JSON Schema object (not a string).")
    seed: Annotated[int, Field(ge=-1, lt=2**64)] | None = Field(None, description="-1: random")
    ignore_eos: bool | None = None
    logit_bias: list[list[Any]] | dict[str, Any] | None = None
    n_probs: Annotated[int, Field(ge=0, le=100)] | None = None
    min_keep: Annotated[int, Field(ge=0)] | None = None
    t_max_predict_ms: Annotated[int, Field(ge=0)] | None = None
    id_slot: Annotated[int, Field(ge=-1)] | None = None
    cache_prompt: bool | None = None
    return_tokens: bool | None = None
    samplers: list[str] | str | None = None
    timings_per_token: bool | None = None
    return_progress: bool | None = None
    post_sampling_probs: bool | None = None
    response_fields: list[str] | None = None
    lora: list[LoraAdapter] | None = None
    # LLM for Unity v2 sends these with every request; llama.cpp ignores them. Typed so that a
    # mistake in them is still a 400, and never a reason to switch into chat mode.
    tfs_z: float | None = None
    penalize_nl: bool | None = None
    penalty_prompt: str | list[int] | None = None
    messages: list[Any] | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, prompt: Any) -> Any:
        if isinstance(prompt, list):
            if not prompt:
                raise ValueError("the prompt is empty")
            for part in prompt:
                for token in part if isinstance(part, list) else [part]:
                    if isinstance(token, int) and not 0 <= token < 2**31:
                        raise ValueError(f"{token} is not a token id")
        return prompt


class TokenizeRequest(_Request):
    content: str
    add_special: bool | None = None
    parse_special: bool | None = None
    with_pieces: bool | None = None


class DetokenizeRequest(_Request):
    tokens: list[TokenId]


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Annotated[str, Field(min_length=1)]
    content: str | list[dict[str, Any]] | None = None


class ApplyTemplateRequest(_Request):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]


class EmbeddingsRequest(_Request):
    """POST /embeddings and /embedding: ``content`` (llama.cpp, LLM for Unity) or ``input`` (OpenAI style)."""

    content: str | list[str | int | list[int]] | None = None
    input: str | list[str | int | list[int]] | None = None
    embd_normalize: int | None = None
    encoding_format: Literal["float", "base64"] | None = None

    @model_validator(mode="after")
    def _has_text(self) -> EmbeddingsRequest:
        if self.content is None and self.input is None:
            raise ValueError("send the text to embed as 'content'")
        return self
