"""What A1111 would accept, velesio answers the same way (issue 12, item 4), on the real tiny
pipeline: every sampler at A1111's smallest step counts, img2img at any strength, CLIP skip,
options kept whole, hires. fix, the built-in upscalers, png-info and the listing endpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from PIL import Image

from tests.e2e.test_a1111 import SMALL, assert_a1111_error, generated, pixels, use_checkpoint
from tests.support.sd import CHECKPOINT_FILE, b64_png, png_of
from velesio_core.backends.sd.samplers import SAMPLERS, SCHEDULES


@pytest.fixture(autouse=True)
def _single_file_checkpoint(sd_stack):
    use_checkpoint(sd_stack, CHECKPOINT_FILE)


def options(stack, values: dict | None = None) -> dict:
    if values is not None:
        response = requests.post(stack.url("/sdapi/v1/options"), json=values, auth=stack.basic, timeout=60)
        assert response.status_code == 200, response.text
    return requests.get(stack.url("/sdapi/v1/options"), auth=stack.basic, timeout=10).json()


@pytest.mark.parametrize("sampler", [sampler.name for sampler in SAMPLERS])
def test_every_sampler_runs_at_one_two_and_three_steps(sd_stack, sampler):
    for steps in (1, 2, 3):
        answer = generated(sd_stack, {**SMALL, "sampler_name": sampler, "steps": steps, "seed": 1})
        assert f"Steps: {steps}, Sampler: {sampler}," in json.loads(answer["info"])["infotexts"][0]


def test_every_schedule_runs_at_one_step(sd_stack):
    for schedule in SCHEDULES:
        for sampler in ("Euler", "DPM++ 2M"):
            body = {**SMALL, "sampler_name": sampler, "scheduler": schedule.label, "steps": 1, "seed": 1}
            generated(sd_stack, body)


@pytest.mark.parametrize(("steps", "strength"), [(1, 0.75), (20, 0), (3, 0.2), (3, 1.0)])
def test_img2img_and_inpainting_run_at_any_denoising_strength(sd_stack, steps, strength):
    rng = np.random.default_rng(1)
    source = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    body = {**SMALL, "steps": steps, "denoising_strength": strength, "init_images": [b64_png(source)], "seed": 2,
            "inpainting_mask_invert": False, "mask_blur": 0}  # fmt: skip
    image = generated(sd_stack, body, "/sdapi/v1/img2img")
    assert png_of(image["images"][0]).size == (64, 64)
    inpainted = pixels(generated(sd_stack, {**body, "mask": b64_png(mask)}, "/sdapi/v1/img2img")["images"][0])
    assert np.array_equal(inpainted[:, 32:], np.asarray(source, dtype=np.int16)[:, 32:])


def test_clip_skip_through_override_settings_and_options_then_back(sd_stack):
    body = {**SMALL, "seed": 11}
    plain = generated(sd_stack, body)
    skipped = generated(sd_stack, {**body, "override_settings": {"CLIP_stop_at_last_layers": 2}})
    assert "Clip skip: 2" in json.loads(skipped["info"])["infotexts"][0]
    assert not np.array_equal(pixels(plain["images"][0]), pixels(skipped["images"][0]))
    restored = generated(sd_stack, body)  # the override lasted one request
    assert np.array_equal(pixels(plain["images"][0]), pixels(restored["images"][0]))
    try:
        assert options(sd_stack, {"CLIP_stop_at_last_layers": 2})["CLIP_stop_at_last_layers"] == 2
        by_options = generated(sd_stack, body)
        assert np.array_equal(pixels(skipped["images"][0]), pixels(by_options["images"][0]))
        generated(sd_stack, {**SMALL, "sampler_name": "DPM++ 2M Karras"})  # later jobs keep working
    finally:
        options(sd_stack, {"CLIP_stop_at_last_layers": 1})
    assert np.array_equal(pixels(plain["images"][0]), pixels(generated(sd_stack, body)["images"][0]))


def test_options_keep_unknown_keys_and_answer_a1111s_whole_key_set(sd_stack):
    before = options(sd_stack)
    assert len(before) > 200 and before["send_seed"] is True and before["samples_format"] == "png"
    try:
        after = options(sd_stack, {"send_seed": False, "an_extension_setting": {"level": 3}})
        assert after["send_seed"] is False and after["an_extension_setting"] == {"level": 3}
        assert set(before) <= set(after)
    finally:
        options(sd_stack, {"send_seed": True})


def test_override_settings_kept_when_not_restored_afterwards(sd_stack):
    try:
        generated(sd_stack, {**SMALL, "override_settings": {"CLIP_stop_at_last_layers": 2},
                             "override_settings_restore_afterwards": False})  # fmt: skip
        assert options(sd_stack)["CLIP_stop_at_last_layers"] == 2
    finally:
        options(sd_stack, {"CLIP_stop_at_last_layers": 1})


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest-exact)", "Lanczos", "Nearest", None])
def test_hires_fix_makes_the_second_pass_at_the_upscaled_size(sd_stack, upscaler):
    body = {**SMALL, "seed": 5, "enable_hr": True, "hr_scale": 2, "hr_upscaler": upscaler,
            "hr_second_pass_steps": 2, "denoising_strength": 0.6}  # fmt: skip
    answer = generated(sd_stack, body)
    assert png_of(answer["images"][0]).size == (128, 128)
    text = json.loads(answer["info"])["infotexts"][0]
    assert f"Hires upscaler: {upscaler or 'Latent'}" in text and "Hires steps: 2" in text
    assert "Denoising strength: 0.6" in text
    assert json.loads(answer["info"])["extra_generation_params"]["Hires steps"] == 2  # A1111 lists them there
    resized = generated(sd_stack, {**body, "hr_resize_x": 96, "hr_resize_y": 0, "hr_sampler_name": "DPM++ 2M"})
    assert png_of(resized["images"][0]).size == (96, 96)
    assert "Hires sampler: DPM++ 2M" in json.loads(resized["info"])["infotexts"][0]


def test_hires_fix_with_an_upscaler_velesio_lacks_names_those_it_has(sd_stack):
    response = requests.post(sd_stack.url("/sdapi/v1/txt2img"), auth=sd_stack.basic, timeout=30,
                             json={**SMALL, "enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"})  # fmt: skip
    assert_a1111_error(response, 400, "R-ESRGAN 4x+", "Lanczos", "Latent (nearest-exact)")


def test_extras_upscale_one_image_and_a_batch(sd_stack):
    image = Image.new("RGB", (32, 16), "red")
    image.putpixel((0, 0), (0, 0, 255))
    body = {"image": b64_png(image), "upscaler_1": "Nearest", "upscaling_resize": 2}
    single = requests.post(sd_stack.url("/sdapi/v1/extra-single-image"), json=body, auth=sd_stack.basic, timeout=30)
    assert single.status_code == 200, single.text
    assert set(single.json()) == {"html_info", "image"}
    upscaled = png_of(single.json()["image"])
    assert upscaled.size == (64, 32) and upscaled.convert("RGB").getpixel((1, 1)) == (0, 0, 255)
    batch = {"imageList": [{"data": b64_png(image), "name": "a"}] * 2, "upscaler_1": "Lanczos", "resize_mode": 1,
             "upscaling_resize_w": 40, "upscaling_resize_h": 40}  # fmt: skip
    answer = requests.post(sd_stack.url("/sdapi/v1/extra-batch-images"), json=batch, auth=sd_stack.basic, timeout=30)
    assert answer.status_code == 200, answer.text
    assert [png_of(b64).size for b64 in answer.json()["images"]] == [(40, 40), (40, 40)]
    esrgan = requests.post(sd_stack.url("/sdapi/v1/extra-single-image"), auth=sd_stack.basic, timeout=30,
                           json={**body, "upscaler_1": "R-ESRGAN 4x+"})  # fmt: skip
    assert_a1111_error(esrgan, 400, "R-ESRGAN 4x+", "Lanczos")


def test_png_info_reads_what_velesio_wrote(sd_stack):
    image = generated(sd_stack, {**SMALL, "seed": 17, "negative_prompt": "blurry"})["images"][0]
    response = requests.post(sd_stack.url("/sdapi/v1/png-info"), json={"image": image}, auth=sd_stack.basic)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["info"].startswith(SMALL["prompt"] + "\nNegative prompt: blurry\n")
    parameters = answer["parameters"]
    assert (parameters["Prompt"], parameters["Seed"], parameters["Steps"]) == (SMALL["prompt"], "17", "3")
    bare = requests.post(sd_stack.url("/sdapi/v1/png-info"), json={"image": b64_png(Image.new("RGB", (8, 8)))},
                         auth=sd_stack.basic)  # fmt: skip
    assert bare.json() == {"info": "", "items": {}, "parameters": {}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/sdapi/v1/face-restorers", []),
        ("/sdapi/v1/realesrgan-models", []),
        ("/sdapi/v1/prompt-styles", []),
        ("/sdapi/v1/hypernetworks", []),
        ("/sdapi/v1/embeddings", {"loaded": {}, "skipped": {}}),
    ],
)
def test_what_velesio_has_none_of_is_an_empty_listing(sd_stack, path, expected):
    response = requests.get(sd_stack.url(path), auth=sd_stack.basic, timeout=10)
    assert response.status_code == 200 and response.json() == expected


def test_upscalers_latent_modes_flags_and_memory_are_listed(sd_stack):
    def get(path: str):
        return requests.get(sd_stack.url(path), auth=sd_stack.basic, timeout=10).json()

    assert [u["name"] for u in get("/sdapi/v1/upscalers")] == ["None", "Lanczos", "Nearest"]
    assert "Latent (nearest-exact)" in [m["name"] for m in get("/sdapi/v1/latent-upscale-modes")]
    assert get("/sdapi/v1/cmd-flags")["api"] is True
    memory = get("/sdapi/v1/memory")
    assert memory["ram"]["total"] >= memory["ram"]["free"] > 0 and "cuda" in memory
