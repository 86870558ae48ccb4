"""The AUTOMATIC1111 dialect's pure parts: samplers, schemas, prompts, encoders, names."""

from __future__ import annotations

import json
import os
import time

import pytest

from velesio_core.backends.sd.checkpoints import Checkpoint, resolve
from velesio_core.backends.sd.images import decode_image, encode_png
from velesio_core.backends.sd.infotext import infotext
from velesio_core.backends.sd.prompts import LoraRequest, extract_loras
from velesio_core.backends.sd.samplers import SAMPLERS, choose
from velesio_core.dialects.a1111 import decode, encode
from velesio_core.dialects.a1111.schemas import Img2ImgRequest, Txt2ImgRequest
from velesio_core.digests import file_sha256, sidecar_path
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.image_board import ImageProgress
from velesio_core.validation import parse


@pytest.mark.parametrize(
    ("sampler", "schedule", "expected"),
    [
        (None, None, ("Euler", "Automatic")),
        ("Euler a", None, ("Euler a", "Automatic")),
        ("LMS Karras", None, ("LMS", "Karras")),
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "Automatic")),  # Karras is its own default, as A1111 reports
        ("DPM++ 2M", "Exponential", ("DPM++ 2M", "Exponential")),
        ("DPM++ 2M SDE Karras", None, ("DPM++ 2M SDE", "Karras")),
        ("euler", "karras", ("Euler", "Karras")),
        ("k_dpmpp_2m", "SGMUniform", ("DPM++ 2M", "SGM Uniform")),
        ("Euler Karras", "Exponential", ("Euler", "Karras")),  # the suffix wins, as in A1111
    ],
)
def test_sampler_names_resolve_as_a1111_resolves_them(sampler, schedule, expected):
    choice = choose(sampler, schedule)
    assert (choice.sampler.name, choice.schedule.label) == expected


def test_an_unknown_sampler_or_schedule_is_a_400_naming_the_valid_ones():
    with pytest.raises(GatewayError) as failure:
        choose("Euler b")
    assert failure.value.kind is ErrorKind.INVALID_REQUEST
    assert all(sampler.name in failure.value.message for sampler in SAMPLERS)
    with pytest.raises(GatewayError, match="Karras"):
        choose("Euler", "Wobbly")
    with pytest.raises(GatewayError, match="the DDIM sampler cannot use the Karras schedule"):
        choose("DDIM Karras")


def test_schedules_become_diffusers_scheduler_options():
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    from velesio_core.backends.sd.samplers import make_scheduler

    base = EulerDiscreteScheduler(beta_schedule="scaled_linear").config
    karras = make_scheduler(choose("DPM++ 2M SDE Karras"), base)
    assert isinstance(karras, DPMSolverMultistepScheduler)
    assert karras.config.use_karras_sigmas and karras.config.algorithm_type == "sde-dpmsolver++"
    automatic = make_scheduler(choose("DPM++ 2M SDE"), base)
    assert automatic.config.use_exponential_sigmas and not automatic.config.use_karras_sigmas
    assert make_scheduler(choose("Euler"), base).config.use_karras_sigmas is False


def test_lora_tags_leave_the_prompt_and_carry_their_weights():
    assert extract_loras("a wall <lora:moss:0.6>, old <LORA:cracks> <lora:moss:0.8:0.4>") == (
        "a wall , old",
        [LoraRequest("moss", 0.4), LoraRequest("cracks", 1.0)],
    )
    assert extract_loras("no tags here") == ("no tags here", [])
    with pytest.raises(GatewayError, match="not a number"):
        extract_loras("<lora:moss:lots>")


def test_txt2img_schema_is_bounded_and_keeps_unknown_fields():
    request = parse(Txt2ImgRequest, {"prompt": "x", "hr_upscaler": "Latent", "script_args": None, "cfg_scale": 7})
    assert request.width == 512 and request.steps == 50 and decode.sampler(request).sampler.name == "Euler"
    for bad in ({"width": 32}, {"steps": "many"}, {"seed": 1.5}, {"batch_size": 0}, {"tiling": "sometimes"}):
        with pytest.raises(GatewayError):
            parse(Txt2ImgRequest, {"prompt": "x", **bad})
    with pytest.raises(GatewayError, match=r"there are: Latent, .*Lanczos, Nearest"):
        parse(Txt2ImgRequest, {"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"})


def test_the_job_payload_carries_the_resolved_sampler_and_img2img_the_first_image():
    request = parse(Img2ImgRequest, {"init_images": ["a", "b"], "sampler_name": "DPM2 a Karras", "mask_blur": 2})
    payload = decode.payload(request)
    assert payload["init_images"] == ["a"] and payload["mask_blur"] == 2 and payload["denoising_strength"] == 0.75
    assert (payload["sampler_name"], payload["scheduler"]) == ("DPM2 a", "Automatic")


def test_info_has_every_key_a1111_writes():
    request = parse(Txt2ImgRequest, {"prompt": "p", "negative_prompt": "n", "batch_size": 2})
    result = {"seeds": [5, 6], "infotexts": ["a", "b"], "sampler_name": "Euler", "scheduler": "Automatic",
              "denoising_strength": None, "sd_model_name": "m", "sd_model_hash": "h", "sd_vae_name": None,
              "clip_skip": 1, "is_using_inpainting_conditioning": False, "job_timestamp": "x", "version": "v",
              "images": ["i", "j"]}  # fmt: skip
    info = json.loads(encode.generation(request, result)["info"])
    contract = ("prompt all_prompts negative_prompt all_negative_prompts seed all_seeds subseed all_subseeds "
                "subseed_strength width height sampler_name cfg_scale steps batch_size restore_faces "
                "face_restoration_model sd_model_name sd_model_hash sd_vae_name sd_vae_hash seed_resize_from_w "
                "seed_resize_from_h denoising_strength extra_generation_params index_of_first_image infotexts styles "
                "job_timestamp clip_skip is_using_inpainting_conditioning version").split()  # fmt: skip
    assert set(contract) <= set(info)
    assert info["seed"] == 5 and info["all_seeds"] == [5, 6] and info["all_prompts"] == ["p", "p"]


def test_progress_counts_every_batch_and_is_zero_when_idle():
    now = time.time()
    assert encode.progress(ImageProgress(None), now=now)["progress"] == 0
    current = ImageProgress("j", step=5, steps=10, job_no=1, job_count=2, started_at=now - 3, waiting=2, running=1)
    body = encode.progress(current, now=now)
    assert body["progress"] == 0.75 and body["eta_relative"] == pytest.approx(1.0)
    assert body["state"]["sampling_step"] == 5 and body["state"]["job_count"] == 4


def test_infotext_is_a1111s_layout_with_quoted_values():
    text = infotext("castle", "", {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.0, "Model": "a, b", "VAE": None})
    assert text == 'castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Model: "a, b"'


def test_images_in_and_out():
    from PIL import Image

    from tests.support.sd import b64_png, png_of

    image = decode_image("data:image/png;base64," + b64_png(Image.new("RGB", (8, 8))), field="f", max_side=64)
    assert image.size == (8, 8)
    for bad in ("***", "", "aGVsbG8="):
        with pytest.raises(GatewayError) as failure:
            decode_image(bad, field="init_images[0]", max_side=64)
        assert failure.value.status == 400 and "init_images[0]" in failure.value.message
    with pytest.raises(GatewayError) as failure:
        decode_image(b64_png(Image.new("RGB", (65, 8))), field="f", max_side=64)
    assert failure.value.status == 413
    assert png_of(encode_png(Image.new("RGB", (8, 8)), "hello\nSteps: 1")).info["parameters"] == "hello\nSteps: 1"


def test_a_checkpoint_answers_to_every_a1111_alias(tmp_path):
    path = tmp_path / "sub" / "dream shaper.safetensors"
    path.parent.mkdir()
    path.write_bytes(b"weights")
    entry = Checkpoint(path, "sub/dream shaper.safetensors", file_sha256(path)).a1111()
    digest = entry["sha256"]
    assert (
        entry["model_name"] == "sub_dream shaper" and entry["title"] == f"sub/dream shaper.safetensors [{digest[:10]}]"
    )
    for alias in (entry["title"], "sub_dream shaper", "dream shaper.safetensors", digest, digest[:10],
                  "sub/dream shaper.safetensors [0123456789]"):  # fmt: skip
        assert resolve([entry], alias) is entry, alias
    assert resolve([entry], "dreamshaper") is None


def test_a_checkpoint_digest_is_kept_beside_it_until_the_file_changes(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"one")
    first = file_sha256(path)
    assert sidecar_path(path).read_text().split()[0] == first
    sidecar_path(path).write_text(sidecar_path(path).read_text().replace(first, "f" * 64))
    assert file_sha256(path) == "f" * 64  # trusted while size and mtime match
    path.write_bytes(b"two")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert file_sha256(path) != "f" * 64
