"""OpenAI image requests decoded into AUTOMATIC1111's payloads, without a request or a worker."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from velesio_core.dialects.a1111.decode import to_store
from velesio_core.dialects.openai_images.decode import img2img_payload, txt2img_payload, with_chosen
from velesio_core.dialects.openai_images.schemas import ImageEditRequest, ImageGenerationRequest
from velesio_core.errors import ErrorKind, GatewayError


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


def test_size_quality_and_n_become_a1111s_fields():
    request = ImageGenerationRequest(prompt="a castle", size="128x64", quality="high", n=2)
    payload = txt2img_payload(request, max_side=512)
    assert (payload["width"], payload["height"], payload["steps"], payload["batch_size"]) == (128, 64, 50, 2)
    assert payload["prompt"] == "a castle" and "sd_model_checkpoint" not in payload


def test_a_size_over_the_servers_limit_is_a_400():
    with pytest.raises(GatewayError, match="larger than this server allows") as raised:
        txt2img_payload(ImageGenerationRequest(prompt="x", size="1024x1024"), max_side=512)
    assert raised.value.kind is ErrorKind.INVALID_REQUEST


def test_the_checkpoint_and_vae_chosen_for_a1111_apply_and_nothing_else_does():
    payload = txt2img_payload(ImageGenerationRequest(prompt="x"), max_side=512)
    chosen = {"sd_model_checkpoint": "other.safetensors [30856ba79e]", "sd_vae": "", "CLIP_stop_at_last_layers": 2}
    # As A1111's POST /sdapi/v1/options leaves them on the image board: JSON values.
    applied = with_chosen(payload, to_store(chosen))
    assert applied == {**payload, "sd_model_checkpoint": "other.safetensors [30856ba79e]"}
    assert "sd_model_checkpoint" not in payload  # the payload given is left as it was


def test_an_edit_takes_image_or_the_first_of_image_brackets():
    request = ImageEditRequest(prompt="a lake", size="64x64")
    for name in ("image", "image[]"):
        payload = img2img_payload(request, {name: png()}, max_side=512)
        assert base64.b64decode(payload["init_images"][0]) == png() and payload["mask"] is None


def test_an_edit_without_an_image_or_with_one_that_is_not_is_a_400_before_anything_is_queued():
    request = ImageEditRequest(prompt="a lake")
    with pytest.raises(GatewayError, match="image: Field required") as raised:
        img2img_payload(request, {"mask": png()}, max_side=512)
    assert raised.value.kind is ErrorKind.INVALID_REQUEST
    with pytest.raises(GatewayError) as raised:
        img2img_payload(request, {"image": b"not a picture"}, max_side=512)
    assert raised.value.status == 400


def test_an_edit_of_a_picture_larger_than_allowed_is_refused():
    with pytest.raises(GatewayError) as raised:
        img2img_payload(ImageEditRequest(prompt="x", size="64x64"), {"image": png((600, 64))}, max_side=512)
    assert raised.value.kind is ErrorKind.PAYLOAD_TOO_LARGE
