"""OpenAI image requests as velesio image payloads (AUTOMATIC1111's txt2img and img2img bodies).

``size`` is the picture's width and height ("auto": 512x512, Stable Diffusion 1.5's own);
``quality`` sets the denoising steps (low 15, medium/standard/auto 30, high/hd 50); ``style``
and OpenAI's other model-specific fields are ignored. An edit's mask follows OpenAI's
convention, the transparent pixels are those to repaint, and becomes A1111's, where white is.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping
from typing import Any

from ...backends.sd.images import decode_image
from ...errors import invalid_request, not_supported
from ..a1111 import decode as a1111
from ..a1111.schemas import Img2ImgRequest, Txt2ImgRequest
from .schemas import ImageEditRequest, ImageGenerationRequest

_STEPS = {"low": 15, "medium": 30, "standard": 30, "auto": 30, "high": 50, "hd": 50}
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


def _size(size: str | None, max_side: int) -> tuple[int, int]:
    if size in (None, "auto"):
        return 512, 512
    match = _SIZE.match(size)
    if match is None:
        raise invalid_request(f"size: {size!r} is not WIDTHxHEIGHT (e.g. 512x512) or auto")
    width, height = int(match[1]), int(match[2])
    if width % 8 or height % 8 or min(width, height) < 64:
        raise invalid_request(f"size: {size} must be multiples of 8, at least 64 per side")
    if max(width, height) > max_side:
        raise invalid_request(f"size: {size} is larger than this server allows ({max_side} per side)")
    return width, height


def _common(request: ImageGenerationRequest | ImageEditRequest, max_side: int) -> dict[str, Any]:
    if request.response_format == "url":
        raise not_supported("response_format: url is not offered; use b64_json (the default here)")
    if request.output_format not in (None, "png"):
        raise not_supported(f"output_format: only png is offered, not {request.output_format!r}")
    quality = request.quality or "auto"
    if quality not in _STEPS:
        raise invalid_request(f"quality: must be one of {', '.join(_STEPS)}")
    width, height = _size(request.size, max_side)
    return {
        "prompt": request.prompt,
        "width": width,
        "height": height,
        "batch_size": request.n or 1,
        "steps": _STEPS[quality],
    }


def txt2img_payload(request: ImageGenerationRequest, *, max_side: int) -> dict[str, Any]:
    return a1111.payload(Txt2ImgRequest.model_validate(_common(request, max_side)))


def img2img_payload(request: ImageEditRequest, files: Mapping[str, bytes], *, max_side: int) -> dict[str, Any]:
    """An edit: the form's ``image`` (or ``image[]``, the first of several) repainted under its
    ``mask``, if any. The image is checked here, so that a bad one is a 400 before anything is
    queued."""
    image = files.get("image") or files.get("image[]")
    if image is None:
        raise invalid_request("image: Field required (a file)")
    fields = _common(request, max_side)
    fields["init_images"] = [base64.b64encode(image).decode()]
    mask = files.get("mask")
    if mask is not None:
        fields["mask"] = _a1111_mask(mask)
        # Repaint from the original picture under the mask, as OpenAI's edits do.
        fields["inpainting_fill"] = 1
    payload = a1111.payload(Img2ImgRequest.model_validate(fields))
    decode_image(payload["init_images"][0], field="image", max_side=max_side)
    return payload


def with_chosen(payload: dict[str, Any], board_options: Mapping[str, str]) -> dict[str, Any]:
    """The payload on the checkpoint and VAE chosen with AUTOMATIC1111's POST /sdapi/v1/options,
    which OpenAI's requests have no field for. ``board_options`` is the image board's hash, whose
    values A1111's dialect keeps as JSON."""
    chosen = a1111.stored_options(board_options)
    return payload | {key: chosen[key] for key in ("sd_model_checkpoint", "sd_vae") if chosen.get(key)}


def _a1111_mask(mask: bytes) -> str:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(mask))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise invalid_request(f"mask: not an image Pillow can read ({error.__class__.__name__})") from None
    if "A" not in image.getbands():
        raise invalid_request("mask: must be a PNG with an alpha channel (transparent where to edit)")
    repaint = ImageOps.invert(image.getchannel("A")).point(lambda value: 255 if value > 127 else 0)
    out = io.BytesIO()
    repaint.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()
