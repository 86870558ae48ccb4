"""Request schemas of OpenAI's Images API.

Fields for OpenAI's own models that a Stable Diffusion pipeline has no use for (``style``,
``background``, ``moderation``, ``output_compression``) are accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Prompt = Annotated[str, Field(min_length=1, max_length=32000)]


class _Images(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    prompt: Prompt
    model: str | None = None
    n: Annotated[int, Field(ge=1, le=10)] | None = None
    size: str | None = None
    quality: str | None = None
    response_format: Literal["b64_json", "url"] | None = None
    output_format: str | None = None
    user: str | None = None


class ImageGenerationRequest(_Images):
    """POST /v1/images/generations (JSON)."""

    style: str | None = None


class ImageEditRequest(_Images):
    """POST /v1/images/edits: the form's text fields (the image and the mask come as files)."""

    model_config = ConfigDict(strict=False, extra="allow")  # form fields are all strings
