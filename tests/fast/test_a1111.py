"""AUTOMATIC1111's API (/sdapi/v1/*), route by route, as the Unity SD integration and A1111
clients read it (CONTRACTS.md 3 and 6.9).

The fast layer: the real API, queue and image board over a fake pipeline that makes plain PNGs
(see tests/support/fake_backend.py). tests/e2e/test_a1111.py runs a real diffusers pipeline.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
from PIL import Image

from tests.fast.conftest import BASIC, arrived, eventually, run
from tests.support.fake_backend import CHECKPOINTS, LORAS, VAES

SMALL = {"prompt": "a mossy stone wall", "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler a"}
TITLE, FOLDER = CHECKPOINTS[0]["title"], CHECKPOINTS[1]["title"]


def png_of(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def a1111_error(response, status: int, *words: str) -> dict:
    """A1111's error middleware shape (CONTRACTS.md 3.2), never a traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json
    assert set(body) == {"error", "detail", "body", "errors"}, body
    assert "Traceback" not in response.text
    for word in words:
        assert word in body["detail"], body
    return body


def generate(stack, body: dict, path: str = "/sdapi/v1/txt2img") -> dict:
    response = stack.post(path, body, auth=BASIC)
    assert response.status_code == 200, response.text
    return response.json


@pytest.mark.parametrize("path", ["/sdapi/v1/sd-models", "/api/sd-models"])  # the Unity client's fallback
def test_sd_models_list_every_checkpoint_under_a1111s_names(stack, path):
    models = stack.get(path, auth=BASIC).json
    assert [model["model_name"] for model in models] == ["tiny-ldm", "velesio-tiny-sd"]
    assert all(set(model) == {"title", "model_name", "hash", "sha256", "filename", "config"} for model in models)


def test_vaes_loras_samplers_schedulers_and_scripts_are_listed(stack):
    assert stack.get("/sdapi/v1/sd-vae").json == [{"model_name": name, "filename": name} for name in VAES]
    assert [lora["name"] for lora in stack.get("/sdapi/v1/loras").json] == LORAS
    samplers = stack.get("/sdapi/v1/samplers").json
    assert {"Euler a", "DPM++ 2M", "DDIM", "UniPC"} <= {sampler["name"] for sampler in samplers}
    assert all(set(sampler) == {"name", "aliases", "options"} for sampler in samplers)
    schedulers = stack.get("/sdapi/v1/schedulers").json
    assert {"Automatic", "Karras", "Exponential"} <= {schedule["label"] for schedule in schedulers}
    assert stack.get("/sdapi/v1/scripts").json == {"txt2img": [], "img2img": []}


def test_txt2img_answers_raw_base64_pngs_an_echo_and_a_json_info_string(stack):
    answer = generate(stack, {**SMALL, "seed": 1234, "negative_prompt": "blurry"})
    assert not answer["images"][0].startswith("data:")
    image = png_of(answer["images"][0])
    assert image.format == "PNG" and image.size == (64, 64)
    assert isinstance(answer["info"], str)  # the Unity client parses it again, to read "seed"
    info = json.loads(answer["info"])
    assert info["seed"] == 1234 and info["all_seeds"] == [1234] and info["sampler_name"] == "Euler a"
    assert (info["width"], info["steps"], info["negative_prompt"]) == (64, 3, "blurry")
    assert info["infotexts"][0] == image.info["parameters"]
    assert info["sd_model_name"] == "tiny-ldm"
    assert answer["parameters"]["prompt"] == SMALL["prompt"] and answer["parameters"]["seed"] == 1234


def test_the_unity_clients_body_is_taken_as_it_sends_it(stack):
    """SDParamsInTxt2Img serialised by Newtonsoft: every field, always (CONTRACTS.md 3.1)."""
    body = {
        "enable_hr": False,
        "denoising_strength": 0,
        "firstphase_width": 0,
        "firstphase_height": 0,
        "hr_scale": 2,
        "hr_upscaler": "",
        "hr_second_pass_steps": 0,
        "hr_resize_x": 0,
        "hr_resize_y": 0,
        "prompt": "cobblestones",
        "styles": [""],
        "seed": -1,
        "subseed": -1,
        "subseed_strength": 0,
        "seed_resize_from_h": -1,
        "seed_resize_from_w": -1,
        "sampler_name": "DPM++ 2M Karras",
        "batch_size": 1,
        "n_iter": 1,
        "steps": 4,
        "cfg_scale": 7,
        "width": 64,
        "height": 64,
        "restore_faces": False,
        "tiling": True,
        "negative_prompt": "",
        "eta": 0,
        "s_churn": 0,
        "s_tmax": 0,
        "s_tmin": 0,
        "s_noise": 1,
        "override_settings_restore_afterwards": True,
        "sampler_index": "Euler",
    }
    answer = generate(stack, body)
    seed = json.loads(answer["info"])["seed"]
    assert isinstance(seed, int) and seed >= 0  # a random seed, reported
    assert stack.images.received[-1][1]["sampler_name"] == "DPM++ 2M"


def test_batches_give_consecutive_seeds(stack):
    info = json.loads(generate(stack, {**SMALL, "seed": 50, "batch_size": 2, "n_iter": 2})["info"])
    assert info["all_seeds"] == [50, 51, 52, 53] and len(info["infotexts"]) == 4


def test_send_images_false_answers_no_images(stack):
    assert generate(stack, {**SMALL, "send_images": False})["images"] == []


def test_img2img_takes_the_init_image_and_does_not_echo_it(stack):
    body = {**SMALL, "seed": 9, "denoising_strength": 0.5, "init_images": [b64_png(Image.new("RGB", (96, 80)))]}
    answer = generate(stack, body, "/sdapi/v1/img2img")
    assert png_of(answer["images"][0]).size == (64, 64)
    assert answer["parameters"]["init_images"] is None  # not echoed unless include_init_images
    assert json.loads(answer["info"])["denoising_strength"] == 0.5
    echoed = generate(stack, {**body, "include_init_images": True}, "/sdapi/v1/img2img")
    assert echoed["parameters"]["init_images"] == body["init_images"]


def test_options_switch_the_checkpoint_by_model_name_or_title_as_a_job(stack):
    assert stack.get("/sdapi/v1/options").json["sd_model_checkpoint"] == TITLE
    response = stack.post("/sdapi/v1/options", {"sd_model_checkpoint": "velesio-tiny-sd"}, auth=BASIC)
    assert response.status_code == 200 and response.json is None  # A1111 answers null
    assert stack.images.received[-1] == ("sd_options", {"sd_model_checkpoint": FOLDER})
    options = stack.get("/api/options", auth=BASIC).json  # the Unity client's fallback
    assert options["sd_model_checkpoint"] == FOLDER and options["sd_checkpoint_hash"] is None
    assert "Model: velesio-tiny-sd" in json.loads(generate(stack, SMALL)["info"])["infotexts"][0]
    stack.post("/sdapi/v1/options", {"sd_model_checkpoint": TITLE})
    assert stack.get("/sdapi/v1/options").json["sd_checkpoint_hash"] == CHECKPOINTS[0]["sha256"]


def test_options_set_the_vae_and_clip_skip(stack):
    assert stack.post("/sdapi/v1/options", {"sd_vae": VAES[0], "CLIP_stop_at_last_layers": 2}).status_code == 200
    options = stack.get("/sdapi/v1/options").json
    assert options["sd_vae"] == VAES[0] and options["CLIP_stop_at_last_layers"] == 2
    generate(stack, SMALL)
    assert stack.images.received[-1][1]["clip_skip"] == 2 and stack.images.received[-1][1]["sd_vae"] == VAES[0]


def test_override_settings_last_one_request_unless_kept(stack):
    once = generate(stack, {**SMALL, "override_settings": {"sd_model_checkpoint": "velesio-tiny-sd"}})
    assert "Model: velesio-tiny-sd" in json.loads(once["info"])["infotexts"][0]
    assert stack.get("/sdapi/v1/options").json["sd_model_checkpoint"] == TITLE
    generate(
        stack,
        {**SMALL, "override_settings": {"sd_model_checkpoint": FOLDER}, "override_settings_restore_afterwards": False},
    )
    assert stack.get("/sdapi/v1/options").json["sd_model_checkpoint"] == FOLDER


def test_progress_is_idle_and_public(stack):
    progress = stack.get("/sdapi/v1/progress", auth=None)  # the Unity Editor polls it without credentials
    assert progress.status_code == 200
    assert progress.json["progress"] == 0 and progress.json["eta_relative"] == 0
    assert progress.json["state"]["job_count"] == 0 and progress.json["current_image"] is None


def _while_running(stack, body: dict, look):
    """Start an image job, run ``look()`` once it reached the held step, then let it finish."""

    async def go():
        job = asyncio.ensure_future(stack.arequest("POST", "/sdapi/v1/txt2img", json=body, auth=BASIC))
        await arrived(stack.images.at_step.is_set, "the job reaching the held step")
        seen = await look()
        stack.images.release_step.set()
        return seen, await job

    return run(go)


def test_progress_reports_the_running_jobs_real_step(stack):
    stack.images.hold_at_step = 2

    async def look():
        return (await stack.arequest("GET", "/sdapi/v1/progress", auth=None)).json

    progress, answer = _while_running(stack, {**SMALL, "steps": 4}, look)
    assert answer.status_code == 200
    assert progress["state"]["sampling_step"] == 2 and progress["state"]["sampling_steps"] == 4
    assert progress["progress"] == 0.5 and progress["state"]["job_count"] == 1
    assert progress["current_task"].startswith("task(") and progress["textinfo"] == "Step 2/4"
    assert stack.get("/sdapi/v1/progress").json["progress"] == 0


def test_internal_progress_follows_a_task_by_its_force_task_id(stack):
    stack.images.hold_at_step = 1

    async def look():
        return (await stack.arequest("POST", "/internal/progress", json={"id_task": "mine"}, auth=BASIC)).json

    during, answer = _while_running(stack, {**SMALL, "force_task_id": "mine"}, look)
    assert answer.status_code == 200
    assert during["active"] is True and during["queued"] is False and during["progress"] == pytest.approx(1 / 3, 1e-3)
    after = stack.post("/internal/progress", {"id_task": "mine"}).json
    assert after["completed"] is True and after["active"] is False and after["queue_position"] is None


def test_interrupt_answers_what_is_done(stack):
    stack.images.hold_at_step = 2

    async def look():
        return await stack.arequest("POST", "/sdapi/v1/interrupt", auth=BASIC)

    interrupted, answer = _while_running(stack, {**SMALL, "n_iter": 3, "seed": 5}, look)
    assert interrupted.status_code == 200 and interrupted.json == {}
    assert answer.status_code == 200
    assert json.loads(answer.json["info"])["all_seeds"] == [5]  # one batch of three
    png_of(answer.json["images"][0])


def test_skip_gives_up_the_current_batch_only(stack):
    stack.images.hold_at_step = 2

    async def look():
        return await stack.arequest("POST", "/sdapi/v1/skip", auth=BASIC)

    skipped, answer = _while_running(stack, {**SMALL, "n_iter": 2, "seed": 70}, look)
    assert skipped.status_code == 200
    assert json.loads(answer.json["info"])["all_seeds"] == [70, 71]
    assert stack.images.received[-1][0] == "txt2img"


def test_interrupt_and_skip_with_no_job_running_do_nothing(stack):
    assert stack.post("/sdapi/v1/interrupt").status_code == 200
    assert stack.post("/sdapi/v1/skip").status_code == 200


def test_a_client_that_leaves_stops_its_image_job_and_its_request(make_stack):
    # A short timeout: a request that missed its client's leaving would answer a 504 after it.
    stack = make_stack(JOB_TIMEOUT="2")
    stack.images.hold_at_step = 1
    # The client hangs up right after its body, while the job starts and reports progress.
    written = stack.writes("POST", "/sdapi/v1/txt2img", {**SMALL, "steps": 50}, auth=BASIC, disconnect_after=0)
    assert written.status is None  # nobody to answer
    eventually(lambda: stack.get("/sdapi/v1/progress").json["state"]["queue_running"] == 0, "the job stopping")


def test_auth_is_http_basic_with_the_token_as_password_or_bearer(stack):
    missing = stack.post("/sdapi/v1/txt2img", SMALL, auth=None)
    assert missing.status_code == 401 and missing.json == {"detail": "Incorrect username or password"}
    assert missing.headers["www-authenticate"].startswith("Basic")
    wrong = stack.post(
        "/sdapi/v1/txt2img", SMALL, auth={"Authorization": "Basic " + base64.b64encode(b"u:no").decode()}
    )
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
    for path in ("/api/sd-models", "/api/options"):  # A1111's, not Ollama's, though under /api/
        refused = stack.get(path, auth=None)
        assert refused.status_code == 401 and refused.json == {"detail": "Incorrect username or password"}
    assert stack.post("/sdapi/v1/txt2img", SMALL).status_code == 200  # Bearer works too


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"sampler_name": "Euler z"}, 400, ["Euler a", "DPM++ 2M"]),
        ({"scheduler": "Wobbly"}, 400, ["Karras"]),
        ({"width": 32}, 400, ["width", "greater than or equal to 64"]),  # 100 is taken: rounded down to 96, as A1111
        ({"height": 16384}, 400, ["height"]),
        ({"width": 4096}, 400, ["larger than this server allows"]),
        ({"steps": "twenty"}, 400, ["steps"]),  # "20" is taken: A1111's pydantic coerces it
        ({"steps": 0}, 400, ["steps"]),
        ({"cfg_scale": -1}, 400, ["cfg_scale"]),
        ({"batch_size": 1000}, 400, ["batch_size"]),
        ({"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}, 400, ["hr_upscaler", "Lanczos", "Latent"]),
        ({"script_name": "x/y/z plot"}, 400, ["scripts"]),
        ({"alwayson_scripts": {"controlnet": {}}}, 400, ["controlnet"]),
        ({"override_settings": {"sd_model_checkpoint": "nope.safetensors"}}, 404, ["nope", TITLE]),
    ],
)
def test_bad_input_is_a_4xx_in_a1111s_shape(stack, change, status, words):
    a1111_error(stack.post("/sdapi/v1/txt2img", {**SMALL, **change}, auth=BASIC), status, *words)


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"init_images": []}, 404, ["Init image not found"]),
        ({"init_images": ["not base64 at all!"]}, 400, ["init_images[0]", "base64"]),
        ({"init_images": [base64.b64encode(b"just some bytes").decode()]}, 400, ["init_images[0]", "image"]),
        ({"init_images": [b64_png(Image.new("RGB", (4096, 8)))]}, 413, ["4096x8"]),
        ({"mask": "%%%"}, 400, ["mask"]),
    ],
)
def test_bad_images_are_refused_before_queueing(stack, change, status, words):
    body = {**SMALL, "init_images": [b64_png(Image.new("RGB", (64, 64), "red"))], **change}
    a1111_error(stack.post("/sdapi/v1/img2img", body, auth=BASIC), status, *words)
    assert stack.images.received == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"sd_model_checkpoint": "nope"}, ["nope", TITLE]),
        ({"sd_vae": "nope"}, ["nope", VAES[0]]),
        ({"CLIP_stop_at_last_layers": 13}, ["CLIP_stop_at_last_layers"]),
    ],
)
def test_bad_options_are_400(stack, body, words):
    a1111_error(stack.post("/sdapi/v1/options", body), 400, *words)


def test_not_json_not_an_object_and_no_task_id_are_400(stack):
    a1111_error(stack.post("/sdapi/v1/txt2img", body=b"{", auth=BASIC), 400, "JSON")
    a1111_error(stack.post("/sdapi/v1/txt2img", [1, 2], auth=BASIC), 400, "object")
    a1111_error(stack.post("/internal/progress", {}), 400, "id_task")


def test_unknown_routes_and_methods_are_in_a1111s_shape(stack):
    a1111_error(stack.get("/sdapi/v1/no-such-route"), 404)
    a1111_error(stack.get("/sdapi/v1/txt2img"), 405)


def test_without_an_image_worker_image_requests_are_503_with_a_retry_hint(make_stack):
    stack = make_stack(images=False)
    response = stack.post("/sdapi/v1/txt2img", SMALL, auth=BASIC)
    body = a1111_error(response, 503, "RUN_SD")
    assert body["error"] == "RuntimeError" and int(response.headers["retry-after"]) > 0
    for path in ("/sdapi/v1/sd-models", "/sdapi/v1/options"):
        a1111_error(stack.get(path), 503)
    assert stack.get("/sdapi/v1/progress").json["progress"] == 0
