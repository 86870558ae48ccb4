"""AUTOMATIC1111's API, as Unity Stable Diffusion integrations and A1111 clients call it
(docs/clients.md, Stable Diffusion for Unity and AUTOMATIC1111 clients)."""

from __future__ import annotations

import hashlib
from typing import Any

import falcon
import falcon.asgi

from velesio_core.auth import credential_from_headers
from velesio_core.backends.sd.checkpoints import resolve
from velesio_core.backends.sd.images import decode_image
from velesio_core.dialects.a1111 import encode
from velesio_core.dialects.a1111.schemas import Img2ImgRequest, OptionsRequest, Txt2ImgRequest
from velesio_core.errors import ErrorKind, GatewayError, invalid_request
from velesio_core.image_board import ImageBoard
from velesio_core.jobs import IMAGE_MODEL, JobKind
from velesio_core.queue.keys import JobControl
from velesio_core.registry import image_pipelines
from velesio_core.validation import parse

from ..relay import Relay, send_json


def task_name(req: falcon.asgi.Request, task_id: str) -> str:
    """A1111's ``force_task_id`` as the name of a job for the token that sent it.

    The id is the client's choice, so it never becomes a job id: two clients (or one guessing
    another's ids) that send the same one each get their own job, and each reads only its own.
    """
    credential = credential_from_headers(req.get_header("Authorization"), req.get_header("X-Api-Key")) or ""
    return hashlib.sha256(f"{credential}\0{task_id}".encode()).hexdigest()


class _Images:
    def __init__(self, relay: Relay, board: ImageBoard) -> None:
        self._relay = relay
        self._board = board
        self._models = relay.models


class Generate(_Images):
    """POST /sdapi/v1/txt2img and /sdapi/v1/img2img."""

    def __init__(self, *args: Any, kind: JobKind) -> None:
        super().__init__(*args)
        self._kind = kind
        self._schema = Img2ImgRequest if kind is JobKind.IMG2IMG else Txt2ImgRequest

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(self._schema, await self._relay.read_json(req))
        max_side = self._relay.settings.sd_max_side
        request.check_size(max_side)
        payload = request.payload()
        if isinstance(request, Img2ImgRequest):
            if not request.init_images:
                raise GatewayError(ErrorKind.NOT_FOUND, "Init image not found")  # A1111's answer
            # Checked here, so that a bad image is a 400 before anything is queued.
            decode_image(request.init_images[0], field="init_images[0]", max_side=max_side)
            if request.mask:
                decode_image(request.mask, field="mask", max_side=max_side)
        await image_pipelines(self._models)  # no image worker at all: 503 now, not after JOB_DEADLINE
        chosen = await self._board.options()
        checkpoint = request.override("sd_model_checkpoint") or chosen.get("sd_model_checkpoint")
        vae = request.override("sd_vae") or chosen.get("sd_vae")
        if checkpoint is not None:
            payload["sd_model_checkpoint"] = checkpoint
        if vae is not None:
            payload["sd_vae"] = vae
        if "CLIP_stop_at_last_layers" in chosen and not request.override("CLIP_stop_at_last_layers"):
            payload["clip_skip"] = int(chosen["CLIP_stop_at_last_layers"])
        job = self._relay.job(self._kind, payload, IMAGE_MODEL)
        if request.force_task_id:
            ttl_s = int(job.deadline - job.enqueued_at + job.timeout_s) + 60
            await self._board.name_task(task_name(req, request.force_task_id), job.id, ttl_s)
        result = await self._relay.result(req, job)
        if not request.override_settings_restore_afterwards:
            kept = {key: request.override(key) for key in ("sd_model_checkpoint", "sd_vae") if request.override(key)}
            await self._board.set_options(kept)
        send_json(resp, encode.generation(request, result))


class Options(_Images):
    """GET and POST /sdapi/v1/options (and /api/options, the Unity client's fallback).

    A checkpoint switch is a job on the image queue, so that it happens between two image jobs,
    never under one; it answers once the checkpoint is loaded, as A1111 does.
    """

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        pipeline = (await image_pipelines(self._models))[0]
        chosen = await self._board.options()
        title = chosen.get("sd_model_checkpoint") or pipeline["sd_model_checkpoint"]
        entry = next((entry for entry in pipeline["checkpoints"] if entry["title"] == title), None)
        send_json(resp, encode.options(entry, chosen.get("sd_vae") or pipeline["sd_vae"], chosen))

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(OptionsRequest, await self._relay.read_json(req))
        pipelines = await image_pipelines(self._models)
        chosen: dict[str, str] = {}
        if request.sd_model_checkpoint is not None:
            chosen["sd_model_checkpoint"] = _checkpoint_title(pipelines, request.sd_model_checkpoint)
        if request.sd_vae is not None:
            chosen["sd_vae"] = _vae_name(pipelines, request.sd_vae)
        if request.CLIP_stop_at_last_layers is not None:
            chosen["CLIP_stop_at_last_layers"] = str(request.CLIP_stop_at_last_layers)
        if "sd_model_checkpoint" in chosen or "sd_vae" in chosen:
            payload = {key: chosen[key] for key in ("sd_model_checkpoint", "sd_vae") if key in chosen}
            await self._relay.result(req, self._relay.job(JobKind.SD_OPTIONS, payload, IMAGE_MODEL))
        await self._board.set_options(chosen)
        send_json(resp, None)


def _checkpoint_title(pipelines: list[dict[str, Any]], wanted: str) -> str:
    listed = {entry["title"]: entry for pipeline in pipelines for entry in pipeline["checkpoints"]}
    found = resolve(list(listed.values()), wanted)
    if found is None:
        raise invalid_request(
            f"sd_model_checkpoint: no checkpoint is called {wanted!r}; there are: {', '.join(listed) or 'none'}"
        )
    return str(found["title"])


def _vae_name(pipelines: list[dict[str, Any]], wanted: str) -> str:
    if wanted in ("Automatic", "None", ""):
        return "Automatic" if wanted != "None" else "None"
    known = {name for pipeline in pipelines for name in pipeline["vaes"]}
    for name in known:
        if wanted in (name, name.rsplit(".", 1)[0]):
            return name
    raise invalid_request(
        f"sd_vae: no VAE is called {wanted!r}; there are: Automatic, None, {', '.join(sorted(known))}"
    )


class SdModels(_Images):
    """GET /sdapi/v1/sd-models (and /api/sd-models): every worker's checkpoints, once each."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        listed: dict[str, dict[str, Any]] = {}
        for pipeline in await image_pipelines(self._models):
            for entry in pipeline["checkpoints"]:
                listed.setdefault(entry["title"], entry)
        send_json(resp, list(listed.values()))


class SdVaes(_Images):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        names = sorted({name for pipeline in await image_pipelines(self._models) for name in pipeline["vaes"]})
        send_json(resp, [{"model_name": name, "filename": name} for name in names])


class Loras(_Images):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        names = sorted({name for pipeline in await image_pipelines(self._models) for name in pipeline["loras"]})
        send_json(resp, [{"name": name, "alias": name, "path": None, "metadata": {}} for name in names])


class Progress(_Images):
    """GET /sdapi/v1/progress: the current image job's real step progress (public, see auth.py)."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.progress(await self._board.current()))


class TaskProgress(_Images):
    """POST /internal/progress ``{"id_task": ...}``: one task's place in the queue, or its progress
    (A1111's web UI call, for a request sent with ``force_task_id``)."""

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await self._relay.read_json(req)
        task = body.get("id_task") if isinstance(body, dict) else None
        if not isinstance(task, str) or not task:
            raise invalid_request("id_task: send the task id given as force_task_id")
        job_id = await self._board.task_job(task_name(req, task))
        position = await self._board.position(job_id) if job_id is not None else None
        current = await self._board.current()
        send_json(resp, encode.task_progress(job_id or "", position, current))


class Control(_Images):
    """POST /sdapi/v1/interrupt and /sdapi/v1/skip: act on the current image job."""

    def __init__(self, *args: Any, action: JobControl) -> None:
        super().__init__(*args)
        self._action = action

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._board.control(self._action)
        send_json(resp, {})


class Static:
    def __init__(self, value: Any) -> None:
        self._value = value

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, self._value)


def add_routes(app: falcon.asgi.App, relay: Relay, board: ImageBoard) -> None:
    common = (relay, board)
    app.add_route("/sdapi/v1/txt2img", Generate(*common, kind=JobKind.TXT2IMG))
    app.add_route("/sdapi/v1/img2img", Generate(*common, kind=JobKind.IMG2IMG))
    for path in ("/sdapi/v1/options", "/api/options"):
        app.add_route(path, Options(*common))
    for path in ("/sdapi/v1/sd-models", "/api/sd-models"):
        app.add_route(path, SdModels(*common))
    app.add_route("/sdapi/v1/sd-vae", SdVaes(*common))
    app.add_route("/sdapi/v1/loras", Loras(*common))
    app.add_route("/sdapi/v1/samplers", Static(encode.samplers()))
    app.add_route("/sdapi/v1/scripts", Static({"txt2img": [], "img2img": []}))  # no scripts: clients probe
    app.add_route("/sdapi/v1/schedulers", Static(encode.schedulers()))
    app.add_route("/sdapi/v1/progress", Progress(*common))
    app.add_route("/internal/progress", TaskProgress(*common))
    app.add_route("/sdapi/v1/interrupt", Control(*common, action=JobControl.INTERRUPT))
    app.add_route("/sdapi/v1/skip", Control(*common, action=JobControl.SKIP))
