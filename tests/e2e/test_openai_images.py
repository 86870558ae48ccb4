"""OpenAI's Images API through velesio's Stable Diffusion workers, with the official `openai` SDK
(fields as in OpenAI's reference, platform.openai.com/docs/api-reference/images)."""

from __future__ import annotations

import base64
import io

import openai
import pytest
import requests
from PIL import Image

from tests.support.sd import png_of
from velesio_core.dialects.openai_images.decode import _a1111_mask

SMALL = {"size": "64x64", "quality": "low"}


@pytest.fixture
def client(sd_stack):
    with openai.OpenAI(base_url=sd_stack.url("/v1"), api_key=sd_stack.token, max_retries=0) as sdk:
        yield sdk


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_generate_answers_n_pngs_of_the_size_asked(client):
    answer = client.images.generate(model="stable-diffusion", prompt="a red castle", n=2, response_format="b64_json",
                                    user="someone", style="vivid", **SMALL)  # fmt: skip
    assert len(answer.data) == 2 and answer.created > 0
    images = [png_of(item.b64_json) for item in answer.data]
    assert all(image.size == (64, 64) for image in images)
    assert images[0].tobytes() != images[1].tobytes()
    assert answer.size == "64x64" and answer.output_format == "png"


def test_edit_repaints_a_picture_under_a_mask(client):
    picture = Image.new("RGB", (64, 64), (20, 120, 200))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (16, 16, 48, 48))  # transparent: repaint here
    files = {
        "image": ("picture.png", png_bytes(picture), "image/png"),
        "mask": ("mask.png", png_bytes(mask), "image/png"),
    }
    answer = client.images.edit(**files, prompt="a window", n=1, **SMALL)
    [item] = answer.data
    assert png_of(item.b64_json).size == (64, 64)


def test_an_edit_without_a_mask_repaints_the_whole_picture(client):
    picture = Image.new("RGB", (64, 64), (200, 10, 10))
    answer = client.images.edit(image=("picture.png", png_bytes(picture), "image/png"), prompt="a lake", **SMALL)
    assert png_of(answer.data[0].b64_json).size == (64, 64)


def test_openais_transparent_mask_becomes_a1111s_white_one():
    mask = Image.new("RGBA", (8, 8), (255, 255, 255, 255))
    mask.putpixel((2, 3), (255, 255, 255, 0))
    converted = Image.open(io.BytesIO(base64.b64decode(_a1111_mask(png_bytes(mask)))))
    assert converted.mode == "L"
    assert converted.getpixel((2, 3)) == 255 and converted.getpixel((0, 0)) == 0


def test_errors_come_in_openais_shape(client):
    with pytest.raises(openai.APIStatusError) as url:
        client.images.generate(prompt="x", response_format="url", **SMALL)
    assert url.value.status_code == 501 and "b64_json" in url.value.body["message"]
    with pytest.raises(openai.BadRequestError) as size:
        client.images.generate(prompt="x", size="100x100")
    assert "multiples of 8" in size.value.body["message"] and size.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as empty:
        client.images.generate(prompt="", **SMALL)
    assert "prompt" in empty.value.body["message"]
    opaque = png_bytes(Image.new("RGB", (64, 64)))
    with pytest.raises(openai.BadRequestError) as mask:
        client.images.edit(image=("p.png", opaque, "image/png"), mask=("m.png", opaque, "image/png"), prompt="x",
                           **SMALL)  # fmt: skip
    assert "alpha channel" in mask.value.body["message"]
    with pytest.raises(openai.BadRequestError) as not_an_image:
        client.images.edit(image=("p.png", b"not a picture", "image/png"), prompt="x", **SMALL)
    assert not_an_image.value.body["message"].startswith("image: not an image")


def test_the_checkpoint_chosen_through_a1111s_options_serves_openai_requests_too(client, sd_stack):
    listed = requests.get(sd_stack.url("/sdapi/v1/sd-models"), headers=sd_stack.auth, timeout=30).json()
    chosen = {"sd_model_checkpoint": listed[0]["title"]}
    assert requests.post(sd_stack.url("/sdapi/v1/options"), json=chosen, headers=sd_stack.auth, timeout=60).ok
    answer = client.images.generate(model="stable-diffusion", prompt="a tower", response_format="b64_json", **SMALL)
    assert png_of(answer.data[0].b64_json).size == (64, 64)
