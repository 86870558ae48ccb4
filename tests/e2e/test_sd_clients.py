"""Real AUTOMATIC1111 clients against velesio: the Unity Stable Diffusion integration's calls
(docs/clients.md, Stable Diffusion for Unity; reproduced request for request), and the ``webuiapi`` library."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from tests.support.metrics import scrape
from tests.support.processes import free_port, http_ok, service_env, start_worker, wait_until
from tests.support.sd import CHECKPOINT_FILE, png_of
from velesio_core.tiny_pipeline import MODEL_NAME


def unity_txt2img_body(prompt: str, sampler: str, seed: int) -> dict:
    """SDParamsInTxt2Img as the Unity client serialises it with Newtonsoft: every field, always."""
    return {
        "enable_hr": False, "denoising_strength": 0, "firstphase_width": 0, "firstphase_height": 0, "hr_scale": 2,
        "hr_upscaler": "", "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0, "prompt": prompt,
        "styles": [""], "seed": seed, "subseed": -1, "subseed_strength": 0, "seed_resize_from_h": -1,
        "seed_resize_from_w": -1, "sampler_name": sampler, "batch_size": 1, "n_iter": 1, "steps": 35, "cfg_scale": 7,
        "width": 512, "height": 512, "restore_faces": False, "tiling": True, "negative_prompt": "", "eta": 0,
        "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings_restore_afterwards": True,
        "sampler_index": "Euler",
    }  # fmt: skip


def unity_img2img_body(prompt: str, init_b64: str) -> dict:
    body = unity_txt2img_body(prompt, "Euler a", -1) | {"steps": 4, "width": 64, "height": 64, "tiling": False}
    return body | {
        "init_images": [init_b64], "resize_mode": 0, "denoising_strength": 0.75, "mask_blur": 4, "inpainting_fill": 0,
        "inpaint_full_res": True, "inpaint_full_res_padding": 0, "inpainting_mask_invert": 0,
        "initial_noise_multiplier": 1, "override_settings": None, "script_args": [], "include_init_images": False,
    }  # fmt: skip


def test_the_unity_client_flow(sd_stack):
    """SetModelAsync, then txt2img while the Editor polls progress every half second (here faster)."""
    basic = "Basic " + base64.b64encode(f"unity:{sd_stack.token}".encode()).decode()
    headers = {"Authorization": basic, "Content-Type": "application/json"}
    models = requests.get(sd_stack.url("/sdapi/v1/sd-models"), headers=headers, timeout=10).json()
    names = [model["model_name"] for model in models]
    assert "tiny-ldm" in names
    options = requests.post(sd_stack.url("/sdapi/v1/options"), json={"sd_model_checkpoint": "tiny-ldm"},
                            headers=headers, timeout=60)  # fmt: skip
    assert options.status_code == 200

    result: dict = {}
    body = unity_txt2img_body("a seamless cobblestone texture", "DPM++ 2M Karras", -1)

    def generate() -> None:
        result["response"] = requests.post(sd_stack.url("/sdapi/v1/txt2img"), json=body, headers=headers, timeout=300)

    thread = threading.Thread(target=generate)
    thread.start()
    polled = []
    while thread.is_alive():  # one poll in flight at a time, no credentials, as the Editor does
        progress = requests.get(sd_stack.url("/sdapi/v1/progress"), timeout=10)
        assert progress.status_code == 200
        polled.append(progress.json()["progress"])
        time.sleep(0.1)
    thread.join()
    response = result["response"]
    assert response.status_code == 200, response.text
    answer = response.json()
    image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0])))  # Convert.FromBase64String
    assert image.format == "PNG" and image.size == (512, 512)
    assert answer["info"] != "" and answer["info"] is not None  # a null info throws in the client
    seed = json.loads(answer["info"])["seed"]  # JsonConvert.DeserializeObject(info).seed
    assert isinstance(seed, int) and seed >= 0
    assert all(0 <= value <= 1 for value in polled) and any(0 < value < 1 for value in polled)

    # Image2Material's img2img, with a raw base64 PNG as its init image.
    img2img = requests.post(sd_stack.url("/sdapi/v1/img2img"), json=unity_img2img_body("moss", answer["images"][0]),
                            headers=headers, timeout=120)  # fmt: skip
    assert img2img.status_code == 200, img2img.text
    assert isinstance(json.loads(img2img.json()["info"])["seed"], int)


def test_the_unity_client_fallback_urls(sd_stack):
    auth = ("unity", sd_stack.token)
    models = requests.get(sd_stack.url("/api/sd-models"), auth=auth, timeout=10).json()
    assert {model["model_name"] for model in models} == {"tiny-ldm", MODEL_NAME}
    response = requests.post(sd_stack.url("/api/options"), json={"sd_model_checkpoint": "tiny-ldm"}, auth=auth)
    assert response.status_code == 200


def test_webuiapi_talks_to_velesio(sd_stack):
    host, port = sd_stack.base_url.removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=3)
    api.set_auth("unity", sd_stack.token)
    titles = api.util_get_model_names()
    assert any(title.startswith(CHECKPOINT_FILE) for title in titles)
    api.util_set_model(MODEL_NAME)
    assert api.util_get_current_model() == MODEL_NAME
    api.util_set_model(next(title for title in titles if title.startswith(CHECKPOINT_FILE)))
    assert {"Euler a", "DPM++ 2M"} <= set(api.util_get_sampler_names())
    assert "karras" in api.util_get_scheduler_names()

    result = api.txt2img(prompt="a treasure chest", seed=77, width=64, height=64, batch_size=2)
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.info["all_seeds"] == [77, 78]
    assert result.image.info["parameters"].startswith("a treasure chest\n")

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpainted = api.img2img(images=[result.image], mask_image=mask, mask_blur=0, prompt="gold", seed=5,
                            width=64, height=64, denoising_strength=0.9)  # fmt: skip
    source, painted = np.asarray(result.image.convert("RGB")), np.asarray(inpainted.image.convert("RGB"))
    assert np.array_equal(source[:8], painted[:8])  # outside the mask, untouched
    assert not np.array_equal(source[16:48, 16:48], painted[16:48, 16:48])
    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0

    wrong = webuiapi.WebUIApi(host=host, port=int(port))
    wrong.set_auth("unity", "not-the-token")
    with pytest.raises(RuntimeError, match="401"):
        wrong.txt2img(prompt="x", steps=2, width=64, height=64)


def test_webuiapi_hires_fix_extras_png_info_and_options(sd_stack):
    host, port = sd_stack.base_url.removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=2)
    api.set_auth("unity", sd_stack.token)
    api.util_set_model(next(t for t in api.util_get_model_names() if t.startswith(CHECKPOINT_FILE)))

    hires = api.txt2img(prompt="a lantern", seed=3, width=64, height=64, enable_hr=True, hr_scale=2,
                        hr_upscaler=webuiapi.HiResUpscaler.LatentNearestExact, hr_second_pass_steps=2,
                        denoising_strength=0.5)  # fmt: skip
    assert hires.image.size == (128, 128)
    lanczos = api.txt2img(prompt="a lantern", seed=3, width=64, height=64, enable_hr=True, hr_resize_x=96,
                          hr_upscaler=webuiapi.HiResUpscaler.Lanczos, hr_sampler_name="Euler")  # fmt: skip
    assert lanczos.image.size == (96, 96)
    assert "Hires upscaler: Lanczos" in lanczos.info["infotexts"][0]

    upscaled = api.extra_single_image(hires.image, upscaler_1=webuiapi.Upscaler.Lanczos, upscaling_resize=1.5)
    assert upscaled.image.size == (192, 192)
    batch = api.extra_batch_images([hires.image, lanczos.image], upscaler_1=webuiapi.Upscaler.Nearest,
                                   resize_mode=1, upscaling_resize_w=80, upscaling_resize_h=40)  # fmt: skip
    assert [image.size for image in batch.images] == [(80, 40), (80, 40)]
    with pytest.raises(RuntimeError, match="400"):
        api.extra_single_image(hires.image, upscaler_1=webuiapi.Upscaler.ESRGAN_4x)

    info = api.png_info(hires.image)
    assert info.info.startswith("a lantern\n") and "Hires steps: 2" in info.info
    assert info.json["parameters"]["Seed"] == "3"

    assert {"name": "Lanczos"}.items() <= api.get_upscalers()[1].items()
    assert api.get_face_restorers() == [] and api.get_prompt_styles() == [] and api.get_hypernetworks() == []
    options = api.get_options()
    assert options["send_seed"] is True and "jpeg_quality" in options
    try:
        api.set_options({"send_seed": False, "jpeg_quality": 95, "CLIP_stop_at_last_layers": 2})
        after = api.get_options()
        assert (after["send_seed"], after["jpeg_quality"], after["CLIP_stop_at_last_layers"]) == (False, 95, 2)
        skipped = api.txt2img(prompt="a lantern", seed=3, width=64, height=64)
        assert skipped.info["clip_skip"] == 2
    finally:
        api.set_options({"send_seed": True, "jpeg_quality": 80, "CLIP_stop_at_last_layers": 1})


def test_standalone_image_worker_serves_a1111_on_its_port_without_redis_or_llm(sd_models, logs_dir):
    port, llm_port = free_port(), free_port()
    env = service_env(API="false", API_TOKENS="standalone-sd", API_HOST="127.0.0.1", SD_PORT=str(port),
                      LLM_PORT=str(llm_port), REDIS_URL="redis://127.0.0.1:1/0", RUN_LLAMACPP="false",
                      **sd_models.env())  # fmt: skip
    worker = start_worker(env, logs_dir, "standalone-sd")
    base = f"http://127.0.0.1:{port}"
    auth = ("unity", "standalone-sd")
    try:
        wait_until(lambda: http_ok(base + "/sdapi/v1/sd-models", {"Authorization": "Bearer standalone-sd"}),
                   timeout=120, what="the standalone image worker serving")  # fmt: skip
        answer = requests.post(base + "/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "width": 64, "height": 64,
                                                                 "seed": 3}, auth=auth, timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert json.loads(answer.json()["info"])["seed"] == 3
        png_of(answer.json()["images"][0])
        # A standalone worker serves its metrics on METRICS_PORT too, and counts what it made.
        metrics = scrape(f"http://127.0.0.1:{env['METRICS_PORT']}/metrics")
        assert metrics.value("velesio_worker_images_total", kind="txt2img") == len(answer.json()["images"]) == 1
        assert metrics.value("velesio_worker_backend_up", backend="sd") == 1
        assert not metrics.has("velesio_worker_backend_up", backend="llamacpp")
        assert requests.post(base + "/sdapi/v1/options", json={"sd_model_checkpoint": MODEL_NAME}, auth=auth,
                             timeout=60).status_code == 200  # fmt: skip
        assert "velesio-tiny-sd" in requests.get(base + "/sdapi/v1/options", auth=auth).json()["sd_model_checkpoint"]
        assert requests.get(base + "/sdapi/v1/progress", timeout=10).json()["progress"] == 0
        assert not http_ok(f"http://127.0.0.1:{llm_port}/health")  # no LLM, so no LLM port
    finally:
        assert worker.stop(timeout=30) == 0
