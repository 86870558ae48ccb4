"""AUTOMATIC1111's request and response models, field by field (A1111 cannot run here, so its
published models are written down below: ``modules/api/models.py`` generates them from
``modules/processing.py``'s classes with every field Optional, pydantic coercing in lax mode).

Every field A1111 takes must be taken with A1111's default, with null, and in the other types
A1111's pydantic coerces; options keep whatever key a client sets; the extras, png-info and
listing answers have A1111's keys.
"""

from __future__ import annotations

from typing import Any

import pytest

from velesio_core.backends.sd.backend import at_least_one_step
from velesio_core.backends.sd.infotext import infotext
from velesio_core.backends.sd.samplers import SAMPLERS, SCHEDULES, choose
from velesio_core.backends.sd.upscalers import LATENT_MODES, extras_size, hires_upscaler, listed
from velesio_core.dialects.a1111 import decode, encode
from velesio_core.dialects.a1111.default_options import DEFAULT_OPTIONS
from velesio_core.dialects.a1111.schemas import (
    ExtrasBatchImagesRequest,
    ExtrasSingleImageRequest,
    Img2ImgRequest,
    OptionsRequest,
    Txt2ImgRequest,
)
from velesio_core.errors import GatewayError
from velesio_core.validation import parse

#: StableDiffusionTxt2ImgProcessingAPI: field -> (A1111's default, another value A1111 accepts for it).
A1111_TXT2IMG: dict[str, tuple[Any, Any]] = {
    "prompt": ("", 5),
    "negative_prompt": ("", "blurry"),
    "styles": (None, ["style"]),
    "seed": (-1, "42"),
    "subseed": (-1, 3.0),
    "subseed_strength": (0, "0.5"),
    "seed_resize_from_h": (-1, 0),
    "seed_resize_from_w": (-1, 0),
    "sampler_name": (None, "DPM++ 2M Karras"),
    "sampler_index": ("Euler", "Euler a"),
    "scheduler": (None, "Karras"),
    "batch_size": (1, "2"),
    "n_iter": (1, 2.0),
    "steps": (50, "20"),
    "cfg_scale": (7.0, 7),
    "width": (512, "512"),
    "height": (512, 520),  # not a multiple of 8: A1111 rounds the latent down
    "restore_faces": (None, False),
    "tiling": (None, "true"),
    "do_not_save_samples": (False, 1),
    "do_not_save_grid": (False, 0),
    "eta": (None, 0),
    "denoising_strength": (None, 0),
    "s_min_uncond": (None, 0),
    "s_churn": (None, 0),
    "s_tmax": (None, 0),
    "s_tmin": (None, 0),
    "s_noise": (None, 1),
    "override_settings": (None, {"CLIP_stop_at_last_layers": 2}),
    "override_settings_restore_afterwards": (True, "false"),
    "refiner_checkpoint": (None, ""),
    "refiner_switch_at": (None, 0.8),
    "disable_extra_networks": (False, True),
    "firstpass_image": (None, None),
    "comments": (None, {}),
    "enable_hr": (False, True),
    "firstphase_width": (0, 0),
    "firstphase_height": (0, 0),
    "hr_scale": (2.0, 2),
    "hr_upscaler": (None, "Latent (nearest-exact)"),
    "hr_second_pass_steps": (0, "3"),
    "hr_resize_x": (0, 128),
    "hr_resize_y": (0, 0),
    "hr_checkpoint_name": (None, None),
    "hr_sampler_name": (None, "DPM++ 2M"),
    "hr_scheduler": (None, "Karras"),
    "hr_prompt": ("", "sharper"),
    "hr_negative_prompt": ("", ""),
    "force_task_id": (None, "task-1"),
    "script_name": (None, ""),
    "script_args": ([], []),
    "send_images": (True, 1),
    "save_images": (False, 0),
    "alwayson_scripts": ({}, {}),
    "infotext": (None, "a prompt\nSteps: 3"),
}
#: StableDiffusionImg2ImgProcessingAPI: txt2img's common fields (no hires. fix) and these.
A1111_IMG2IMG: dict[str, tuple[Any, Any]] = {
    "init_images": (None, ["aGVsbG8="]),
    "resize_mode": (0, "1"),
    "denoising_strength": (0.75, 0),
    "image_cfg_scale": (None, 1.5),
    "mask": (None, None),
    "mask_blur_x": (4, "4"),
    "mask_blur_y": (4, 4.0),
    "mask_blur": (None, 0),
    "mask_round": (True, False),
    "inpainting_fill": (0, "1"),
    "inpaint_full_res": (True, 0),
    "inpaint_full_res_padding": (0, 32),
    "inpainting_mask_invert": (0, False),
    "initial_noise_multiplier": (None, 1.0),
    "latent_mask": (None, None),
    "include_init_images": (False, True),
}


@pytest.mark.parametrize("field", list(A1111_TXT2IMG))
def test_every_txt2img_field_takes_a1111s_default_null_and_coerced_values(field):
    default, other = A1111_TXT2IMG[field]
    for value in (default, None, other):
        parse(Txt2ImgRequest, {field: value})
    for value in (default, None, other):
        parse(Img2ImgRequest, {field: value})


@pytest.mark.parametrize("field", list(A1111_IMG2IMG))
def test_every_img2img_field_takes_a1111s_default_null_and_coerced_values(field):
    default, other = A1111_IMG2IMG[field]
    for value in (default, None, other):
        parse(Img2ImgRequest, {field: value})


def test_defaults_and_coercions_are_a1111s():
    request = parse(Img2ImgRequest, {"steps": "20", "inpainting_mask_invert": True, "prompt": None, "tiling": "yes"})
    assert (request.steps, request.inpainting_mask_invert, request.prompt, request.tiling) == (20, 1, "", True)
    defaults = parse(Img2ImgRequest, {})
    for field, (default, _) in {**A1111_TXT2IMG, **A1111_IMG2IMG}.items():
        if field in Img2ImgRequest.model_fields and field not in ("sampler_index",):
            assert getattr(defaults, field) == default, field
    assert parse(Txt2ImgRequest, {}).denoising_strength is None
    assert decode.payload(parse(Txt2ImgRequest, {"width": 515, "height": 520}))["width"] == 512


def test_the_info_answer_keeps_a1111s_processed_keys_with_hires_fix():
    request = parse(Txt2ImgRequest, {"enable_hr": True, "hr_scale": 2, "width": 64, "height": 64})
    result = {"seeds": [5], "infotexts": ["a"], "sampler_name": "Euler", "scheduler": "Automatic",
              "denoising_strength": 0.75, "sd_model_name": "m", "sd_model_hash": "h", "sd_vae_name": None,
              "clip_skip": 2, "is_using_inpainting_conditioning": False, "job_timestamp": "x", "version": "v",
              "images": ["i"]}  # fmt: skip
    answer = encode.generation(request, result)
    assert set(answer) == {"images", "parameters", "info"}
    assert answer["parameters"]["enable_hr"] is True and answer["parameters"]["hr_scale"] == 2.0


@pytest.mark.parametrize(
    ("change", "size"),
    [
        ({}, (192, 128)),
        ({"hr_scale": 1.5}, (144, 96)),
        ({"hr_resize_x": 200}, (200, 128)),  # y keeps the aspect ratio: 133, rounded down to 8
        ({"hr_resize_y": 144}, (216, 144)),
        ({"hr_resize_x": 100, "hr_resize_y": 100}, (96, 96)),
    ],
)
def test_hires_fix_sizes_the_second_pass_as_a1111(change, size):
    request = parse(Txt2ImgRequest, {"enable_hr": True, "width": 96, "height": 64, **change})
    second = decode.payload(request)["hires"]
    assert (second["width"], second["height"]) == size
    assert second["upscaler"] == "Latent" and second["steps"] == 50 and second["denoising_strength"] == 0.75


def test_hires_fix_takes_its_own_sampler_steps_and_upscaler():
    request = parse(Txt2ImgRequest, {"enable_hr": True, "hr_upscaler": "latent (nearest-exact)",
                                     "hr_second_pass_steps": 3, "hr_sampler_name": "DPM++ 2M",
                                     "hr_scheduler": "Karras", "denoising_strength": 0.4})  # fmt: skip
    second = decode.payload(request)["hires"]
    assert (second["upscaler"], second["steps"], second["denoising_strength"]) == ("Latent (nearest-exact)", 3, 0.4)
    assert (second["sampler_name"], second["scheduler"]) == ("DPM++ 2M", "Automatic")
    assert "hires" not in decode.payload(parse(Txt2ImgRequest, {"hr_scale": 4}))
    with pytest.raises(GatewayError, match="larger than this server allows"):
        decode.check(parse(Txt2ImgRequest, {"enable_hr": True, "hr_scale": 4}), max_side=1024)


def test_upscalers_are_a1111s_built_in_ones_and_unknown_ones_name_those_there_are():
    assert [entry["name"] for entry in listed()] == ["None", "Lanczos", "Nearest"]
    assert set(listed()[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert [mode["name"] for mode in encode.latent_upscale_modes()][:2] == ["Latent", "Latent (antialiased)"]
    assert hires_upscaler("lanczos") == "Lanczos" and hires_upscaler("Latent (bicubic)") is LATENT_MODES[2]
    with pytest.raises(GatewayError, match=r"ESRGAN_4x.*there are: Latent.*Nearest"):
        hires_upscaler("ESRGAN_4x")
    with pytest.raises(GatewayError, match=r"upscaler_1.*None, Lanczos, Nearest"):
        parse(ExtrasSingleImageRequest, {"upscaler_1": "R-ESRGAN 4x+"})
    with pytest.raises(GatewayError, match="face restoration"):
        parse(ExtrasSingleImageRequest, {"codeformer_visibility": 1})
    batch = parse(ExtrasBatchImagesRequest, {"imageList": [{"data": "x", "name": "a.png"}], "upscaler_1": "Nearest"})
    assert batch.imageList[0].name == "a.png"
    assert extras_size(64, 32, resize_mode=0, scale=2.5, to=(1, 1)) == (160, 80)
    assert extras_size(64, 32, resize_mode=1, scale=2, to=(100, 90)) == (100, 90)


def test_options_keep_every_key_sent_and_answer_a1111s_whole_key_set():
    sent = {"send_seed": False, "my_extension_key": {"a": [1]}, "CLIP_stop_at_last_layers": "2"}
    request = parse(OptionsRequest, sent)
    chosen = decode.chosen_options(request, [])
    stored = decode.stored_options(decode.to_store(chosen))
    assert stored == {"send_seed": False, "my_extension_key": {"a": [1]}, "CLIP_stop_at_last_layers": 2}
    assert decode.stored_options({"sd_vae": "Automatic"}) == {"sd_vae": "Automatic"}  # stored before JSON values
    pipeline = {"sd_model_checkpoint": "m.safetensors [abc]", "sd_vae": "Automatic", "vaes": [], "loras": [],
                "checkpoints": [{"title": "m.safetensors [abc]", "model_name": "m", "sha256": "abc"}]}  # fmt: skip
    answer = encode.options(pipeline, stored)  # type: ignore[arg-type]
    assert set(DEFAULT_OPTIONS) <= set(answer) and len(DEFAULT_OPTIONS) > 200
    assert answer["send_seed"] is False and answer["my_extension_key"] == {"a": [1]}
    assert answer["CLIP_stop_at_last_layers"] == 2 and answer["sd_model_checkpoint"] == "m.safetensors [abc]"
    assert encode.options(pipeline, {})["send_seed"] is True  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="CLIP_stop_at_last_layers"):
        parse(OptionsRequest, {"CLIP_stop_at_last_layers": 13})


def test_clip_skip_comes_from_override_settings_before_the_options():
    request = parse(Txt2ImgRequest, {"override_settings": {"CLIP_stop_at_last_layers": "3"}})
    assert decode.payload(request, {"CLIP_stop_at_last_layers": 2})["clip_skip"] == 3
    assert decode.payload(parse(Txt2ImgRequest, {}), {"CLIP_stop_at_last_layers": 2})["clip_skip"] == 2
    assert decode.payload(parse(Txt2ImgRequest, {}), {})["clip_skip"] == 1
    with pytest.raises(GatewayError, match="CLIP_stop_at_last_layers"):
        decode.payload(parse(Txt2ImgRequest, {"override_settings": {"CLIP_stop_at_last_layers": "two"}}))


def test_override_settings_are_kept_only_when_asked():
    kept = {"override_settings": {"send_seed": False}, "override_settings_restore_afterwards": False}
    assert decode.kept_options(parse(Txt2ImgRequest, kept)) == {"send_seed": False}
    assert decode.kept_options(parse(Txt2ImgRequest, {"override_settings": {"send_seed": False}})) is None


def test_png_info_reads_velesios_infotext_as_a1111_parses_it():
    text = infotext("a wall, mossy", "blurry", {"Steps": 3, "Sampler": "Euler a", "CFG scale": 7.0, "Seed": 42,
                                                "Size": "64x48", "Model": "tiny", "Version": "velesio 1"})  # fmt: skip
    answer = encode.png_info(text)
    assert answer["info"] == text and answer["items"] == {"parameters": text}
    parameters = answer["parameters"]
    assert parameters["Prompt"] == "a wall, mossy" and parameters["Negative prompt"] == "blurry"
    assert (parameters["Steps"], parameters["Sampler"], parameters["Seed"]) == ("3", "Euler a", "42")
    assert (parameters["Size-1"], parameters["Size-2"]) == ("64", "48")
    assert encode.png_info(None) == {"info": "", "items": {}, "parameters": {}}


@pytest.mark.parametrize(("strength", "steps", "runs"), [(0.75, 1, 1), (0.0, 20, 1), (0.5, 20, 10), (0.01, 3, 1)])
def test_img2img_runs_at_least_one_step_as_a1111(strength, steps, runs):
    assert int(steps * at_least_one_step(strength, steps)) == runs


def test_every_sampler_takes_every_schedule_it_lists():
    for sampler in SAMPLERS:
        for schedule in SCHEDULES:
            if sampler.takes(schedule):
                choose(sampler.name, schedule.label)
