"""Encode velesio's image answers and state the way AUTOMATIC1111 answers (docs/clients.md,
AUTOMATIC1111 clients).

``images`` are raw base64 PNGs (no ``data:`` prefix: the Unity client decodes them as they
are), and ``info`` is a JSON *string*, which the Unity client parses again to read ``seed``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from ...backends.sd.samplers import SAMPLERS, SCHEDULES
from ...backends.sd.upscalers import LATENT_MODES
from ...errors import ErrorKind, GatewayError
from ...image_board import ImageProgress
from ...results import CheckpointEntry, ImageState
from .default_options import DEFAULT_OPTIONS
from .schemas import Img2ImgRequest, Txt2ImgRequest

#: The message A1111 (FastAPI's HTTPBasic) gives a client without valid credentials.
AUTH_FAILED = "Incorrect username or password"


def generation(request: Txt2ImgRequest, result: dict[str, Any]) -> dict[str, Any]:
    """The body of a txt2img or img2img answer."""
    images = result["images"] if request.send_images else []
    return {"images": images, "parameters": parameters(request), "info": orjson.dumps(info(request, result)).decode()}


def parameters(request: Txt2ImgRequest) -> dict[str, Any]:
    """A1111 echoes the request (its defaults filled in), leaving out the input images."""
    echoed = request.model_dump(mode="json")
    if isinstance(request, Img2ImgRequest) and not request.include_init_images:
        echoed["init_images"] = None
        echoed["mask"] = None
    return echoed


def info(request: Txt2ImgRequest, result: dict[str, Any]) -> dict[str, Any]:
    """A1111's ``Processed.js()``."""
    seeds: list[int] = result["seeds"]
    count = len(seeds)
    subseeds = [request.subseed] * count
    return {
        "prompt": request.prompt,
        "all_prompts": [request.prompt] * count,
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [request.negative_prompt] * count,
        "seed": seeds[0] if seeds else request.seed,
        "all_seeds": seeds,
        "subseed": subseeds[0] if subseeds else request.subseed,
        "all_subseeds": subseeds,
        "subseed_strength": request.subseed_strength,
        "width": request.width,
        "height": request.height,
        "sampler_name": result["sampler_name"],
        "scheduler": result["scheduler"],
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": bool(request.restore_faces),
        "face_restoration_model": None,
        "sd_model_name": result["sd_model_name"],
        "sd_model_hash": result["sd_model_hash"],
        "sd_vae_name": result["sd_vae_name"],
        "sd_vae_hash": None,
        "seed_resize_from_w": request.seed_resize_from_w,
        "seed_resize_from_h": request.seed_resize_from_h,
        "denoising_strength": result["denoising_strength"],
        "extra_generation_params": result.get("extra_generation_params", {}),
        "index_of_first_image": 0,
        "infotexts": result["infotexts"],
        "styles": request.styles or [],
        "job_timestamp": result["job_timestamp"],
        "clip_skip": result["clip_skip"],
        "is_using_inpainting_conditioning": result["is_using_inpainting_conditioning"],
        "version": result["version"],
    }


def progress(current: ImageProgress, *, now: float) -> dict[str, Any]:
    """GET /sdapi/v1/progress. Idle: ``progress`` 0, as A1111. ``now``: seconds since the epoch."""
    fraction = current.fraction
    eta = 0.0
    if current.started_at and fraction > 0:
        elapsed = max(0.0, now - current.started_at)
        eta = elapsed / fraction - elapsed
    textinfo = None
    if current.job_id is None and current.waiting:
        textinfo = f"Waiting... {current.waiting} in queue"
    elif current.job_id is not None:
        textinfo = f"Step {current.step}/{current.steps}" + (f", {current.waiting} waiting" if current.waiting else "")
    return {
        "progress": round(fraction, 4),
        "eta_relative": round(eta, 3),
        "state": {
            "skipped": False,
            "interrupted": False,
            "stopping_generation": False,
            "job": f"Batch {current.job_no + 1} out of {current.job_count}" if current.job_id else "",
            "job_count": current.job_count + current.waiting if current.job_id else current.waiting,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(current.started_at))
            if current.started_at
            else "0",
            "job_no": current.job_no,
            "sampling_step": current.step,
            "sampling_steps": current.steps,
            # velesio's own: the image jobs running and waiting, across every worker.
            "queue_running": current.running,
            "queue_waiting": current.waiting,
        },
        "current_image": None,
        "textinfo": textinfo,
        "current_task": f"task({current.job_id})" if current.job_id else None,
    }


def task_progress(job_id: str, position: int | None, current: ImageProgress) -> dict[str, Any]:
    """POST /internal/progress for one task: its place in the queue while it waits, its progress
    while it runs. ``queue_position`` (0: next) is velesio's own addition."""
    active = current.job_id == job_id
    queued = position is not None
    if position is not None:
        textinfo = f"In queue: {position + 1} of {current.waiting}" if current.waiting else "In queue"
    elif active:
        textinfo = f"Step {current.step}/{current.steps}"
    else:
        textinfo = None
    return {
        "active": active,
        "queued": queued,
        "completed": not active and not queued,
        "progress": round(current.fraction, 4) if active else None,
        "eta": None,
        "live_preview": None,
        "id_live_preview": -1,
        "textinfo": textinfo,
        "queue_position": position,
    }


def samplers() -> list[dict[str, Any]]:
    return [sampler.a1111() for sampler in SAMPLERS]


def schedulers() -> list[dict[str, Any]]:
    return [schedule.a1111() for schedule in SCHEDULES]


def sd_models(pipelines: list[ImageState]) -> list[CheckpointEntry]:
    """GET /sdapi/v1/sd-models: every image worker's checkpoints, once each."""
    listed: dict[str, CheckpointEntry] = {}
    for pipeline in pipelines:
        for entry in pipeline["checkpoints"]:
            listed.setdefault(entry["title"], entry)
    return list(listed.values())


def sd_vaes(pipelines: list[ImageState]) -> list[dict[str, Any]]:
    names = sorted({name for pipeline in pipelines for name in pipeline["vaes"]})
    return [{"model_name": name, "filename": name} for name in names]


def loras(pipelines: list[ImageState]) -> list[dict[str, Any]]:
    names = sorted({name for pipeline in pipelines for name in pipeline["loras"]})
    return [{"name": name, "alias": name, "path": None, "metadata": {}} for name in names]


#: Where velesio's behaviour is not A1111's default: it saves no files, and draws noise on the CPU.
_VELESIO_OPTIONS = {"samples_save": False, "grid_save": False, "randn_source": "CPU"}


def options(pipeline: ImageState, chosen: dict[str, Any]) -> dict[str, Any]:
    """GET /sdapi/v1/options: A1111's whole key set with its defaults, what POST /sdapi/v1/options
    set (unknown keys included, as A1111 keeps them), and the checkpoint and VAE loaded.
    ``pipeline``: the first image worker's; ``chosen``: what POST /sdapi/v1/options set."""
    title = chosen.get("sd_model_checkpoint") or pipeline["sd_model_checkpoint"]
    checkpoint = next((entry for entry in pipeline["checkpoints"] if entry["title"] == title), None)
    return {
        **DEFAULT_OPTIONS,
        **_VELESIO_OPTIONS,
        **chosen,
        "sd_model_checkpoint": checkpoint["title"] if checkpoint else None,
        "sd_checkpoint_hash": checkpoint.get("sha256") if checkpoint else None,
        "sd_vae": chosen.get("sd_vae") or pipeline["sd_vae"],
    }


def png_info(text: str | None) -> dict[str, Any]:
    """POST /sdapi/v1/png-info: the ``parameters`` text, and its fields as A1111's
    ``parse_generation_parameters`` gives them (Prompt, Negative prompt, then each "Key: value")."""
    if text is None:
        return {"info": "", "items": {}, "parameters": {}}
    lines = text.strip().split("\n")
    fields: dict[str, Any] = {}
    if lines and _FIELD.search(lines[-1]) and len(_FIELD.findall(lines[-1])) >= 3:
        for key, value in _FIELD.findall(lines.pop()):
            fields[key.strip()] = _unquote(value)
    negative = [i for i, line in enumerate(lines) if line.startswith("Negative prompt:")]
    cut = negative[0] if negative else len(lines)
    parameters: dict[str, Any] = {"Prompt": "\n".join(lines[:cut]).strip()}
    parameters["Negative prompt"] = "\n".join(lines[cut:]).removeprefix("Negative prompt:").strip()
    parameters |= fields
    if isinstance(parameters.get("Size"), str) and "x" in parameters["Size"]:
        width, _, height = parameters["Size"].partition("x")
        parameters["Size-1"], parameters["Size-2"] = width, height
    return {"info": text, "items": {"parameters": text}, "parameters": parameters}


#: One "Key: value" of an infotext's last line; a value with a comma is quoted as JSON.
_FIELD = re.compile(r'\s*(\w[\w \-/]*):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def _unquote(value: str) -> str:
    value = value.strip()
    if value.startswith('"') and value.endswith('"'):
        try:
            return str(orjson.loads(value))
        except orjson.JSONDecodeError:
            return value
    return value


def extras_single(image_b64: str) -> dict[str, Any]:
    return {"html_info": "", "image": image_b64}


def extras_batch(images_b64: list[str]) -> dict[str, Any]:
    return {"html_info": "", "images": images_b64}


def latent_upscale_modes() -> list[dict[str, str]]:
    return [{"name": mode.name} for mode in LATENT_MODES]


def memory(ram: dict[str, int], cuda: dict[str, Any] | None) -> dict[str, Any]:
    """GET /sdapi/v1/memory in A1111's shape (``cuda`` an error object without a GPU, as A1111)."""
    return {"ram": ram, "cuda": cuda if cuda is not None else {"error": "unavailable"}}


def error_body(error: GatewayError) -> bytes:
    """A1111's error middleware shape; a failed login is FastAPI's HTTPBasic answer."""
    if error.kind is ErrorKind.AUTHENTICATION:
        return orjson.dumps({"detail": AUTH_FAILED})
    name = "HTTPException" if error.status < 500 else "RuntimeError"
    return orjson.dumps({"error": name, "detail": error.message, "body": "", "errors": error.message})
