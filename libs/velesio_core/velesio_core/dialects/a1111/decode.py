"""AUTOMATIC1111 requests as velesio's image jobs.

The job payload is the validated request in A1111's own vocabulary, with the sampler resolved,
the size within SD_MAX_SIDE and the input images checked (a bad one is a 400 before anything is
queued), so a worker never sees a bad one. The settings a client chose with POST /sdapi/v1/options
(kept on the image board, each value as JSON text) fill in what a request does not override.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from ...backends.sd.checkpoints import resolve
from ...backends.sd.images import decode_image
from ...backends.sd.samplers import SamplerChoice, choose
from ...backends.sd.upscalers import DEFAULT_HIRES_UPSCALER, LatentMode, hires_upscaler
from ...errors import ErrorKind, GatewayError, invalid_request
from ...results import ImageState
from .schemas import Img2ImgRequest, OptionsRequest, Txt2ImgRequest

#: The settings a generation may override for itself, and that it keeps when it asks to.
_LOADED = ("sd_model_checkpoint", "sd_vae")


def sampler(request: Txt2ImgRequest) -> SamplerChoice:
    return choose(request.sampler_name or request.sampler_index, request.scheduler)


def override(request: Txt2ImgRequest, key: str) -> Any:
    return (request.override_settings or {}).get(key)


def clip_skip(value: Any, *, field: str) -> int | None:
    """A1111's ``CLIP_stop_at_last_layers`` (1: the last layer, 2: the one before, ...), as its
    pydantic takes it (2, 2.0, "2"); None when not set."""
    if value is None:
        return None
    try:
        layers = int(value) if not isinstance(value, bool) and float(value) == int(float(value)) else 0
    except (TypeError, ValueError):
        layers = 0
    if not 1 <= layers <= 12:
        raise invalid_request(f"{field}: CLIP_stop_at_last_layers must be a whole number from 1 to 12, not {value!r}")
    return layers


def stored_options(raw: Mapping[str, str]) -> dict[str, Any]:
    """The options on the image board, as the JSON values they were set to."""
    stored: dict[str, Any] = {}
    for key, text in raw.items():
        try:
            stored[key] = orjson.loads(text)
        except orjson.JSONDecodeError:  # written before values were kept as JSON: a plain name
            stored[key] = text
    return stored


def to_store(values: Mapping[str, Any]) -> dict[str, str]:
    return {key: orjson.dumps(value).decode() for key, value in values.items()}


def check_size(request: Txt2ImgRequest, *, max_side: int) -> None:
    """A generation larger than this server allows is a 400."""
    if request.width > max_side or request.height > max_side:
        raise invalid_request(
            f"width/height: {request.width}x{request.height} is larger than this server allows ({max_side} per side)"
        )


def check(request: Txt2ImgRequest, *, max_side: int) -> None:
    """What a generation cannot be, beyond its schema: larger than this server allows, an img2img
    without an image (404, A1111's answer), or an input image that does not decode (400)."""
    check_size(request, max_side=max_side)
    check_hires(request, max_side=max_side)
    if isinstance(request, Img2ImgRequest):
        if not request.init_images:
            raise GatewayError(ErrorKind.NOT_FOUND, "Init image not found")
        decode_image(request.init_images[0], field="init_images[0]", max_side=max_side)
        if request.mask:
            decode_image(request.mask, field="mask", max_side=max_side)


def payload(request: Txt2ImgRequest, chosen: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The job payload: what a worker needs, in A1111's names. ``chosen``: the options set with
    POST /sdapi/v1/options, which apply where the request overrides nothing."""
    chosen = chosen or {}
    choice = sampler(request)
    layers = clip_skip(override(request, "CLIP_stop_at_last_layers"), field="override_settings")
    if layers is None:
        layers = clip_skip(chosen.get("CLIP_stop_at_last_layers"), field="options")
    job: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "sampler_name": choice.sampler.name,
        "scheduler": choice.schedule.label,
        "batch_size": request.batch_size,
        "n_iter": request.n_iter,
        "steps": request.steps,
        "cfg_scale": request.cfg_scale,
        "width": request.width // 8 * 8,
        "height": request.height // 8 * 8,
        "tiling": bool(request.tiling),
        "eta": request.eta,
        "denoising_strength": request.denoising_strength,
        "clip_skip": layers or 1,
    }
    if request.enable_hr and not isinstance(request, Img2ImgRequest):
        job["hires"] = hires(request, choice)
    if isinstance(request, Img2ImgRequest):
        mask_blur = (
            request.mask_blur if request.mask_blur is not None else max(request.mask_blur_x, request.mask_blur_y)
        )
        job |= {
            "init_images": request.init_images[:1] if request.init_images else [],
            "mask": request.mask,
            "mask_blur": mask_blur,
            "inpainting_mask_invert": request.inpainting_mask_invert,
            "denoising_strength": request.denoising_strength,
        }
    for key in _LOADED:
        value = override(request, key) or chosen.get(key)
        if isinstance(value, str) and value:
            job[key] = value
    return job


def hires(request: Txt2ImgRequest, choice: SamplerChoice) -> dict[str, Any]:
    """Hires. fix's second pass, as A1111 sizes it: ``hr_resize_x``/``hr_resize_y`` (one of them
    0: the other keeps the aspect ratio), else ``hr_scale`` times the first pass; rounded down to
    a multiple of 8, the latents' grid."""
    width, height = request.width // 8 * 8, request.height // 8 * 8
    if request.hr_resize_x == 0 and request.hr_resize_y == 0:
        target = (int(width * request.hr_scale), int(height * request.hr_scale))
    elif request.hr_resize_y == 0:
        target = (request.hr_resize_x, request.hr_resize_x * height // width)
    elif request.hr_resize_x == 0:
        target = (request.hr_resize_y * width // height, request.hr_resize_y)
    else:
        target = (request.hr_resize_x, request.hr_resize_y)
    target = (max(64, target[0] // 8 * 8), max(64, target[1] // 8 * 8))
    upscaler = hires_upscaler(request.hr_upscaler or DEFAULT_HIRES_UPSCALER)
    second = choice
    if request.hr_sampler_name or request.hr_scheduler:
        second = choose(
            request.hr_sampler_name or request.sampler_name or request.sampler_index,
            request.hr_scheduler or request.scheduler,
        )
    return {
        "width": target[0],
        "height": target[1],
        "upscaler": upscaler.name if isinstance(upscaler, LatentMode) else upscaler,
        "steps": request.hr_second_pass_steps or request.steps,
        "sampler_name": second.sampler.name,
        "scheduler": second.schedule.label,
        # A1111's processing default: a txt2img request's denoising_strength is 0.75 unless sent.
        "denoising_strength": 0.75 if request.denoising_strength is None else request.denoising_strength,
        "prompt": request.hr_prompt or None,
        "negative_prompt": request.hr_negative_prompt or None,
    }


def check_hires(request: Txt2ImgRequest, *, max_side: int) -> None:
    if request.enable_hr and not isinstance(request, Img2ImgRequest):
        second = hires(request, sampler(request))
        if second["width"] > max_side or second["height"] > max_side:
            raise invalid_request(
                f"hires. fix: {second['width']}x{second['height']} is larger than this server allows "
                f"({max_side} per side)"
            )


def kept_options(request: Txt2ImgRequest) -> dict[str, Any] | None:
    """The override settings that stay chosen after the generation, as A1111 keeps them with
    ``override_settings_restore_afterwards: false``; None when they are restored."""
    if request.override_settings_restore_afterwards or not request.override_settings:
        return None
    return dict(request.override_settings)


def task_name(credential: str | None, task_id: str) -> str:
    """A1111's ``force_task_id`` as the name of a job for the token (``credential``) that sent it.

    The id is the client's choice, so it never becomes a job id: two clients (or one guessing
    another's ids) that send the same one each get their own job, and each reads only its own.
    """
    return hashlib.sha256(f"{credential or ''}\0{task_id}".encode()).hexdigest()


def progress_task(body: object) -> str:
    """The task id POST /internal/progress ``{"id_task": ...}`` asks about."""
    task = body.get("id_task") if isinstance(body, dict) else None
    if not isinstance(task, str) or not task:
        raise invalid_request("id_task: send the task id given as force_task_id")
    return task


def chosen_options(request: OptionsRequest, pipelines: list[ImageState]) -> dict[str, Any]:
    """The options POST /sdapi/v1/options sets: every key sent, kept as sent (A1111 keeps keys it
    does not know, and answers them back), the checkpoint and VAE by the names the workers list."""
    chosen: dict[str, Any] = dict(request.model_extra or {})
    if request.sd_model_checkpoint is not None:
        chosen["sd_model_checkpoint"] = _checkpoint_title(pipelines, request.sd_model_checkpoint)
    if request.sd_vae is not None:
        chosen["sd_vae"] = _vae_name(pipelines, request.sd_vae)
    if request.CLIP_stop_at_last_layers is not None:
        chosen["CLIP_stop_at_last_layers"] = request.CLIP_stop_at_last_layers
    return chosen


def switch_payload(chosen: Mapping[str, Any]) -> dict[str, str] | None:
    """The payload of the job that loads a chosen checkpoint or VAE; None when none is chosen."""
    switch = {key: chosen[key] for key in _LOADED if key in chosen}
    return switch or None


def _checkpoint_title(pipelines: list[ImageState], wanted: str) -> str:
    listed = {entry["title"]: entry for pipeline in pipelines for entry in pipeline["checkpoints"]}
    found = resolve([dict(entry) for entry in listed.values()], wanted)
    if found is None:
        raise invalid_request(
            f"sd_model_checkpoint: no checkpoint is called {wanted!r}; there are: {', '.join(listed) or 'none'}"
        )
    return str(found["title"])


def _vae_name(pipelines: list[ImageState], wanted: str) -> str:
    if wanted in ("Automatic", "None", ""):
        return "Automatic" if wanted != "None" else "None"
    known: set[str] = {name for pipeline in pipelines for name in pipeline["vaes"]}
    for name in known:
        if wanted in (name, name.rsplit(".", 1)[0]):
            return name
    raise invalid_request(
        f"sd_vae: no VAE is called {wanted!r}; there are: Automatic, None, {', '.join(sorted(known))}"
    )
