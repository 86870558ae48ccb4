"""AUTOMATIC1111 requests as velesio's image jobs.

The job payload is the validated request in A1111's own vocabulary, with the sampler resolved,
the size within SD_MAX_SIDE and the input images checked (a bad one is a 400 before anything is
queued), so a worker never sees a bad one. The settings a client chose with POST /sdapi/v1/options
(kept on the image board) fill in what a request does not override.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ...backends.sd.checkpoints import resolve
from ...backends.sd.images import decode_image
from ...backends.sd.samplers import SamplerChoice, choose
from ...errors import ErrorKind, GatewayError, invalid_request
from ...results import ImageState
from .schemas import Img2ImgRequest, OptionsRequest, Txt2ImgRequest

#: The settings a generation may override for itself, and that it keeps when it asks to.
_LOADED = ("sd_model_checkpoint", "sd_vae")


def sampler(request: Txt2ImgRequest) -> SamplerChoice:
    return choose(request.sampler_name or request.sampler_index, request.scheduler)


def override(request: Txt2ImgRequest, key: str) -> Any:
    return (request.override_settings or {}).get(key)


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
    if isinstance(request, Img2ImgRequest):
        if not request.init_images:
            raise GatewayError(ErrorKind.NOT_FOUND, "Init image not found")
        decode_image(request.init_images[0], field="init_images[0]", max_side=max_side)
        if request.mask:
            decode_image(request.mask, field="mask", max_side=max_side)


def payload(request: Txt2ImgRequest, chosen: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The job payload: what a worker needs, in A1111's names. ``chosen``: the options set with
    POST /sdapi/v1/options, which apply where the request overrides nothing."""
    chosen = chosen or {}
    choice = sampler(request)
    clip_skip = override(request, "CLIP_stop_at_last_layers")
    job = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "sampler_name": choice.sampler.name,
        "scheduler": choice.schedule.label,
        "batch_size": request.batch_size,
        "n_iter": request.n_iter,
        "steps": request.steps,
        "cfg_scale": request.cfg_scale,
        "width": request.width,
        "height": request.height,
        "tiling": bool(request.tiling),
        "eta": request.eta,
        "denoising_strength": request.denoising_strength,
        "clip_skip": clip_skip if isinstance(clip_skip, int) and 1 <= clip_skip <= 12 else 1,
    }
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
        if value is not None:
            job[key] = value
    if "CLIP_stop_at_last_layers" in chosen and not clip_skip:
        job["clip_skip"] = int(chosen["CLIP_stop_at_last_layers"])
    return job


def kept_options(request: Txt2ImgRequest) -> dict[str, str] | None:
    """The overridden checkpoint and VAE that stay chosen after the generation, as A1111 keeps
    them with ``override_settings_restore_afterwards: false``; None when they are restored."""
    if request.override_settings_restore_afterwards:
        return None
    return {key: override(request, key) for key in _LOADED if override(request, key)}


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


def chosen_options(request: OptionsRequest, pipelines: list[ImageState]) -> dict[str, str]:
    """The options POST /sdapi/v1/options sets, by the names the image workers list."""
    chosen: dict[str, str] = {}
    if request.sd_model_checkpoint is not None:
        chosen["sd_model_checkpoint"] = _checkpoint_title(pipelines, request.sd_model_checkpoint)
    if request.sd_vae is not None:
        chosen["sd_vae"] = _vae_name(pipelines, request.sd_vae)
    if request.CLIP_stop_at_last_layers is not None:
        chosen["CLIP_stop_at_last_layers"] = str(request.CLIP_stop_at_last_layers)
    return chosen


def switch_payload(chosen: Mapping[str, str]) -> dict[str, str] | None:
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
