"""AUTOMATIC1111's built-in upscalers, the ones that need no model file: ``None``, ``Lanczos`` and
``Nearest`` for images (hires. fix and the extras), and the latent modes hires. fix can use
instead, which resize the latents themselves before the second pass.

velesio has no ESRGAN, SwinIR or LDSR models: asking for one is a 400 that lists what is here.
Lookups import nothing heavy: the API validates names with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import invalid_request

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class LatentMode:
    name: str
    #: torch.nn.functional.interpolate's mode, and whether it antialiases.
    mode: str
    antialias: bool = False


#: A1111's ``shared.latent_upscale_modes``, in its order.
LATENT_MODES: tuple[LatentMode, ...] = (
    LatentMode("Latent", "bilinear"),
    LatentMode("Latent (antialiased)", "bilinear", antialias=True),
    LatentMode("Latent (bicubic)", "bicubic"),
    LatentMode("Latent (bicubic antialiased)", "bicubic", antialias=True),
    LatentMode("Latent (nearest)", "nearest"),
    LatentMode("Latent (nearest-exact)", "nearest-exact"),
)
#: The image upscalers: name -> Pillow's resampling filter name (None: no upscaling, a plain resize).
IMAGE_UPSCALERS: dict[str, str | None] = {"None": None, "Lanczos": "LANCZOS", "Nearest": "NEAREST"}
#: What A1111 runs for hires. fix when ``hr_upscaler`` is empty.
DEFAULT_HIRES_UPSCALER = "Latent"

_LATENT_BY_NAME = {mode.name.lower(): mode for mode in LATENT_MODES}


def hires_upscaler(name: str) -> LatentMode | str:
    """A latent mode, or the name of an image upscaler; unknown: a 400 naming those there are."""
    latent = _LATENT_BY_NAME.get(name.strip().lower())
    if latent is not None:
        return latent
    for known in IMAGE_UPSCALERS:
        if known.lower() == name.strip().lower():
            return known
    valid = ", ".join([mode.name for mode in LATENT_MODES] + list(IMAGE_UPSCALERS))
    raise invalid_request(f"hr_upscaler: velesio has no upscaler called {name!r}; there are: {valid}")


def extras_upscaler(name: str, *, field: str) -> str:
    for known in IMAGE_UPSCALERS:
        if known.lower() == name.strip().lower():
            return known
    raise invalid_request(f"{field}: velesio has no upscaler called {name!r}; there are: {', '.join(IMAGE_UPSCALERS)}")


def listed() -> list[dict[str, Any]]:
    """GET /sdapi/v1/upscalers, in A1111's ``UpscalerItem`` shape."""
    return [
        {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4 if name != "None" else 1}
        for name in IMAGE_UPSCALERS
    ]


def resize_image(image: Image.Image, size: tuple[int, int], upscaler: str) -> Image.Image:
    """``image`` at ``size`` with an image upscaler (A1111's ``None`` is a plain Lanczos resize)."""
    from PIL import Image as PilImage

    if image.size == size:
        return image
    resampling = IMAGE_UPSCALERS[upscaler] or "LANCZOS"
    return image.resize(size, resample=getattr(PilImage.Resampling, resampling))


def resize_latents(latents: Any, size: tuple[int, int], mode: LatentMode) -> Any:
    """Latents resized to an image ``size`` (width, height), as A1111's latent upscale modes do."""
    import torch

    width, height = size
    antialias = {"antialias": True} if mode.antialias else {}
    return torch.nn.functional.interpolate(latents, size=(height // 8, width // 8), mode=mode.mode, **antialias)


def extras_size(width: int, height: int, *, resize_mode: int, scale: float, to: tuple[int, int]) -> tuple[int, int]:
    """The extras' target: ``scale`` times the image (resize_mode 0), or ``to`` (1)."""
    if resize_mode == 1:
        return to
    return max(1, round(width * scale)), max(1, round(height * scale))


def extras(image: Image.Image, request: Any) -> Image.Image:
    """A1111's extras upscaling of one image: ``upscaler_1``, blended with ``upscaler_2`` at its
    visibility; resize_mode 1 with ``upscaling_crop`` fills the size and crops the middle."""
    from PIL import Image as PilImage

    target = extras_size(
        *image.size,
        resize_mode=request.resize_mode,
        scale=request.upscaling_resize,
        to=(request.upscaling_resize_w, request.upscaling_resize_h),
    )
    size = target
    if request.resize_mode == 1 and request.upscaling_crop:
        ratio = max(target[0] / image.width, target[1] / image.height)
        size = (max(target[0], round(image.width * ratio)), max(target[1], round(image.height * ratio)))
    image = image.convert("RGB")
    upscaled = resize_image(image, size, extras_upscaler(request.upscaler_1, field="upscaler_1"))
    second = extras_upscaler(request.upscaler_2, field="upscaler_2")
    if second != "None" and request.extras_upscaler_2_visibility > 0:
        upscaled = PilImage.blend(upscaled, resize_image(image, size, second), request.extras_upscaler_2_visibility)
    if size != target:
        left, top = (size[0] - target[0]) // 2, (size[1] - target[1]) // 2
        upscaled = upscaled.crop((left, top, left + target[0], top + target[1]))
    return upscaled
