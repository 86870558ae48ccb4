"""AUTOMATIC1111's API, as Unity Stable Diffusion integrations and A1111 clients call it
(docs/clients.md, Stable Diffusion for Unity and AUTOMATIC1111 clients)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import falcon
import falcon.asgi

from velesio_core.auth import credential_from_headers
from velesio_core.backends.sd import upscalers
from velesio_core.backends.sd.images import decode_image, encode_png
from velesio_core.dialects.a1111 import decode, encode
from velesio_core.dialects.a1111.schemas import (
    ExtrasBatchImagesRequest,
    ExtrasSingleImageRequest,
    Img2ImgRequest,
    OptionsRequest,
    PngInfoRequest,
    Txt2ImgRequest,
)
from velesio_core.errors import invalid_request
from velesio_core.image_board import ImageBoard
from velesio_core.jobs import IMAGE_MODEL, JobKind
from velesio_core.queue.keys import JobControl
from velesio_core.registry import image_pipelines
from velesio_core.validation import parse

from ..relay import Relay, send_json
from ..routing import Dialect, Routes

#: A1111's clients expect HTTP Basic's challenge with a 401.
DIALECT = Dialect("a1111", encode.error_body, auth_challenge='Basic realm="velesio"')


def _task_name(req: falcon.asgi.Request, task_id: str) -> str:
    credential = credential_from_headers(req.get_header("Authorization"), req.get_header("X-Api-Key"))
    return decode.task_name(credential, task_id)


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
        decode.check(request, max_side=self._relay.settings.sd_max_side)
        await image_pipelines(self._models)  # no image worker at all: 503 now, not after JOB_DEADLINE
        chosen = decode.stored_options(await self._board.options())
        job = self._relay.job(self._kind, decode.payload(request, chosen), IMAGE_MODEL)
        if request.force_task_id:
            ttl_s = int(job.deadline - job.enqueued_at + job.timeout_s) + 60
            await self._board.name_task(_task_name(req, request.force_task_id), job.id, ttl_s)
        result = await self._relay.result(req, job)
        kept = decode.kept_options(request)
        if kept is not None:
            await self._board.set_options(decode.to_store(kept))
        send_json(resp, encode.generation(request, result))


class Options(_Images):
    """GET and POST /sdapi/v1/options (and /api/options, the Unity client's fallback).

    A checkpoint switch is a job on the image queue, so that it happens between two image jobs,
    never under one; it answers once the checkpoint is loaded, as A1111 does.
    """

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        pipeline = (await image_pipelines(self._models))[0]
        send_json(resp, encode.options(pipeline, decode.stored_options(await self._board.options())))

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(OptionsRequest, await self._relay.read_json(req))
        chosen = decode.chosen_options(request, await image_pipelines(self._models))
        switch = decode.switch_payload(chosen)
        if switch is not None:
            await self._relay.result(req, self._relay.job(JobKind.SD_OPTIONS, switch, IMAGE_MODEL))
        await self._board.set_options(decode.to_store(chosen))
        send_json(resp, None)


class SdModels(_Images):
    """GET /sdapi/v1/sd-models (and /api/sd-models)."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.sd_models(await image_pipelines(self._models)))


class SdVaes(_Images):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.sd_vaes(await image_pipelines(self._models)))


class Loras(_Images):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.loras(await image_pipelines(self._models)))


class Progress(_Images):
    """GET /sdapi/v1/progress: the current image job's real step progress."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.progress(await self._board.current(), now=time.time()))


class TaskProgress(_Images):
    """POST /internal/progress ``{"id_task": ...}``: one task's place in the queue, or its progress
    (A1111's web UI call, for a request sent with ``force_task_id``)."""

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        task = decode.progress_task(await self._relay.read_json(req))
        job_id = await self._board.task_job(_task_name(req, task))
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


class Extras(_Images):
    """POST /sdapi/v1/extra-single-image and /extra-batch-images: the built-in upscalers, run here
    in a thread (a Pillow resize; no model, so no image job)."""

    def __init__(self, *args: Any, batch: bool) -> None:
        super().__init__(*args)
        self._batch = batch

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        schema = ExtrasBatchImagesRequest if self._batch else ExtrasSingleImageRequest
        request = parse(schema, await self._relay.read_json(req))
        max_side = self._relay.settings.sd_max_side
        if isinstance(request, ExtrasBatchImagesRequest):
            sources = [(f"imageList[{i}].data", item.data) for i, item in enumerate(request.imageList)]
        else:
            sources = [("image", request.image)]
        images = [decode_image(data, field=field, max_side=max_side) for field, data in sources]
        for image in images:
            width, height = upscalers.extras_size(
                *image.size,
                resize_mode=request.resize_mode,
                scale=request.upscaling_resize,
                to=(request.upscaling_resize_w, request.upscaling_resize_h),
            )
            if width > max_side or height > max_side:
                raise invalid_request(f"the upscaled image would be {width}x{height}; this server allows {max_side}")
        encoded = await asyncio.to_thread(lambda: [encode_png(upscalers.extras(i, request), None) for i in images])
        send_json(resp, encode.extras_batch(encoded) if self._batch else encode.extras_single(encoded[0]))


class PngInfo(_Images):
    """POST /sdapi/v1/png-info: the generation parameters written into a PNG."""

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(PngInfoRequest, await self._relay.read_json(req))
        if not request.image:
            raise invalid_request("image: send a base64 PNG")
        image = decode_image(request.image, field="image", max_side=self._relay.settings.sd_max_side)
        text = image.info.get("parameters")
        send_json(resp, encode.png_info(text if isinstance(text, str) else None))


class Memory:
    """GET /sdapi/v1/memory: this API process's host memory (the GPUs are the workers')."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        total, free = os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
        send_json(resp, encode.memory({"free": free, "used": total - free, "total": total}, None))


class Static:
    def __init__(self, value: Any) -> None:
        self._value = value

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, self._value)


def add_routes(routes: Routes, relay: Relay, board: ImageBoard) -> None:
    api = routes.speaking(DIALECT, under="/sdapi/")
    common = (relay, board)
    api.add("/sdapi/v1/txt2img", Generate(*common, kind=JobKind.TXT2IMG))
    api.add("/sdapi/v1/img2img", Generate(*common, kind=JobKind.IMG2IMG))
    # The /api/ ones are the Unity SD client's fallbacks, A1111's among Ollama's /api/ paths.
    for path in ("/sdapi/v1/options", "/api/options"):
        api.add(path, Options(*common))
    for path in ("/sdapi/v1/sd-models", "/api/sd-models"):
        api.add(path, SdModels(*common))
    api.add("/sdapi/v1/sd-vae", SdVaes(*common))
    api.add("/sdapi/v1/loras", Loras(*common))
    api.add("/sdapi/v1/samplers", Static(encode.samplers()))
    api.add("/sdapi/v1/scripts", Static({"txt2img": [], "img2img": []}))  # no scripts: clients probe
    api.add("/sdapi/v1/schedulers", Static(encode.schedulers()))
    # The Unity Stable Diffusion client polls it without credentials, even when it sends them for
    # generations (docs/clients.md, Stable Diffusion for Unity). It shows step counts only, never
    # an image.
    api.add("/sdapi/v1/progress", Progress(*common), public=True)
    api.add("/internal/progress", TaskProgress(*common))
    api.add("/sdapi/v1/upscalers", Static(upscalers.listed()))
    api.add("/sdapi/v1/latent-upscale-modes", Static(encode.latent_upscale_modes()))
    api.add("/sdapi/v1/extra-single-image", Extras(*common, batch=False))
    api.add("/sdapi/v1/extra-batch-images", Extras(*common, batch=True))
    api.add("/sdapi/v1/png-info", PngInfo(*common))
    # What velesio has none of: empty, in A1111's shapes.
    for path in ("/sdapi/v1/face-restorers", "/sdapi/v1/realesrgan-models", "/sdapi/v1/prompt-styles"):
        api.add(path, Static([]))
    api.add("/sdapi/v1/hypernetworks", Static([]))
    api.add("/sdapi/v1/embeddings", Static({"loaded": {}, "skipped": {}}))
    api.add("/sdapi/v1/cmd-flags", Static({"api": True, "nowebui": True, "listen": True, "api_auth": None}))
    api.add("/sdapi/v1/memory", Memory())
    api.add("/sdapi/v1/interrupt", Control(*common, action=JobControl.INTERRUPT))
    api.add("/sdapi/v1/skip", Control(*common, action=JobControl.SKIP))
