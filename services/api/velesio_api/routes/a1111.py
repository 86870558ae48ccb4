"""AUTOMATIC1111's API, as Unity Stable Diffusion integrations and A1111 clients call it
(docs/clients.md, Stable Diffusion for Unity and AUTOMATIC1111 clients)."""

from __future__ import annotations

import time
from typing import Any

import falcon
import falcon.asgi

from velesio_core.auth import credential_from_headers
from velesio_core.dialects.a1111 import decode, encode
from velesio_core.dialects.a1111.schemas import Img2ImgRequest, OptionsRequest, Txt2ImgRequest
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
        job = self._relay.job(self._kind, decode.payload(request, await self._board.options()), IMAGE_MODEL)
        if request.force_task_id:
            ttl_s = int(job.deadline - job.enqueued_at + job.timeout_s) + 60
            await self._board.name_task(_task_name(req, request.force_task_id), job.id, ttl_s)
        result = await self._relay.result(req, job)
        kept = decode.kept_options(request)
        if kept is not None:
            await self._board.set_options(kept)
        send_json(resp, encode.generation(request, result))


class Options(_Images):
    """GET and POST /sdapi/v1/options (and /api/options, the Unity client's fallback).

    A checkpoint switch is a job on the image queue, so that it happens between two image jobs,
    never under one; it answers once the checkpoint is loaded, as A1111 does.
    """

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        pipeline = (await image_pipelines(self._models))[0]
        send_json(resp, encode.options(pipeline, await self._board.options()))

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(OptionsRequest, await self._relay.read_json(req))
        chosen = decode.chosen_options(request, await image_pipelines(self._models))
        switch = decode.switch_payload(chosen)
        if switch is not None:
            await self._relay.result(req, self._relay.job(JobKind.SD_OPTIONS, switch, IMAGE_MODEL))
        await self._board.set_options(chosen)
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
    api.add("/sdapi/v1/interrupt", Control(*common, action=JobControl.INTERRUPT))
    api.add("/sdapi/v1/skip", Control(*common, action=JobControl.SKIP))
