"""OpenAI's Images API (/v1/images/*), on the image workers, through the same queue and
pipelines as AUTOMATIC1111's API (and its checkpoint choice)."""

from __future__ import annotations

import time
from typing import Any

import falcon
import falcon.asgi

from velesio_core.dialects.openai_images import decode, encode
from velesio_core.dialects.openai_images.schemas import ImageEditRequest, ImageGenerationRequest
from velesio_core.errors import ErrorKind, GatewayError, invalid_request
from velesio_core.image_board import ImageBoard
from velesio_core.jobs import IMAGE_MODEL, JobKind
from velesio_core.registry import image_pipelines
from velesio_core.validation import parse

from ..relay import Relay, send_json
from ..routing import Routes
from . import openai


class _Images:
    def __init__(self, relay: Relay, board: ImageBoard) -> None:
        self._relay = relay
        self._board = board

    async def _generate(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, kind: JobKind, payload: dict[str, Any]
    ) -> None:
        await image_pipelines(self._relay.models)  # no image worker at all: 503 now, not after JOB_DEADLINE
        payload = decode.with_chosen(payload, await self._board.options())
        result = await self._relay.result(req, self._relay.job(kind, payload, IMAGE_MODEL))
        created = int(time.time())
        send_json(resp, encode.images(result, created=created, width=payload["width"], height=payload["height"]))


class Generations(_Images):
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(ImageGenerationRequest, await self._relay.read_json(req))
        payload = decode.txt2img_payload(request, max_side=self._relay.settings.sd_max_side)
        await self._generate(req, resp, JobKind.TXT2IMG, payload)


class Edits(_Images):
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        fields, files = await self._form(req)
        request = parse(ImageEditRequest, fields)
        payload = decode.img2img_payload(request, files, max_side=self._relay.settings.sd_max_side)
        await self._generate(req, resp, JobKind.IMG2IMG, payload)

    async def _form(self, req: falcon.asgi.Request) -> tuple[dict[str, str], dict[str, bytes]]:
        limit = self._relay.settings.max_body_bytes
        if req.content_length is not None and req.content_length > limit:
            raise GatewayError(ErrorKind.PAYLOAD_TOO_LARGE, f"the request body is larger than {limit} bytes")
        if not (req.content_type or "").startswith(falcon.MEDIA_MULTIPART):
            raise invalid_request("send the edit as multipart/form-data (image, mask, prompt, ...)")
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        async for part in await req.get_media():
            if part.filename is not None:
                # The first of several images is edited; Stable Diffusion takes one init image.
                files.setdefault(part.name, await part.get_data())
            else:
                fields[part.name] = await part.get_text()
        return fields, files


def add_routes(routes: Routes, relay: Relay, board: ImageBoard) -> None:
    # A whole picture is one form part; Falcon's default part limit (1 MiB) is too small for one.
    handler = routes.request_options.media_handlers[falcon.MEDIA_MULTIPART]
    assert isinstance(handler, falcon.media.MultipartFormHandler)
    handler.parse_options.max_body_part_buffer_size = relay.settings.max_body_bytes
    # OpenAI's API: its errors, and its dialect label in the metrics.
    api = routes.speaking(openai.DIALECT)
    api.add("/v1/images/generations", Generations(relay, board))
    api.add("/v1/images/edits", Edits(relay, board))
