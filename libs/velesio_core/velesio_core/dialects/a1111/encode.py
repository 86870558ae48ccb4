"""Encode velesio's image answers and state the way AUTOMATIC1111 answers (docs/clients.md,
AUTOMATIC1111 clients).

``images`` are raw base64 PNGs (no ``data:`` prefix: the Unity client decodes them as they
are), and ``info`` is a JSON *string*, which the Unity client parses again to read ``seed``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ...backends.sd.samplers import SAMPLERS, SCHEDULES
from ...errors import ErrorKind, GatewayError
from ...image_board import ImageProgress
from ...results import CheckpointEntry, ImageState
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
        "extra_generation_params": {},
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


def options(pipeline: ImageState, chosen: dict[str, str]) -> dict[str, Any]:
    """GET /sdapi/v1/options: the settings velesio honours, with A1111's names and defaults.
    ``pipeline``: the first image worker's; ``chosen``: what POST /sdapi/v1/options set."""
    title = chosen.get("sd_model_checkpoint") or pipeline["sd_model_checkpoint"]
    checkpoint = next((entry for entry in pipeline["checkpoints"] if entry["title"] == title), None)
    vae = chosen.get("sd_vae") or pipeline["sd_vae"]
    clip_skip = chosen.get("CLIP_stop_at_last_layers")
    return {
        "sd_model_checkpoint": checkpoint["title"] if checkpoint else None,
        "sd_checkpoint_hash": checkpoint.get("sha256") if checkpoint else None,
        "sd_vae": vae,
        "CLIP_stop_at_last_layers": int(clip_skip) if clip_skip else 1,
        "samples_format": "png",
        "grid_format": "png",
        "enable_pnginfo": True,
        "save_images_add_number": True,
        "samples_save": False,
        "grid_save": False,
        "sd_checkpoints_limit": 1,
        "sd_vae_as_default": True,
        "randn_source": "CPU",
        "eta_noise_seed_delta": 0,
        "img2img_fix_steps": False,
    }


def error_body(error: GatewayError) -> bytes:
    """A1111's error middleware shape; a failed login is FastAPI's HTTPBasic answer."""
    if error.kind is ErrorKind.AUTHENTICATION:
        return orjson.dumps({"detail": AUTH_FAILED})
    name = "HTTPException" if error.status < 500 else "RuntimeError"
    return orjson.dumps({"error": name, "detail": error.message, "body": "", "errors": error.message})
