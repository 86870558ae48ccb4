"""AUTOMATIC1111's API end to end: client → API → Redis → worker → a real diffusers pipeline.

The pipeline is velesio's tiny one (random weights), loaded from disk the way a downloaded
checkpoint is. Its pictures are noise, so these tests check what a client can rely on: formats,
seeds, what changes a picture and what does not, progress, and errors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from tests.support.metrics import Scrape, scrape
from tests.support.processes import wait_until
from tests.support.sd import CHECKPOINT_FILE, LORA_NAME, VAE_FILE, b64_png, png_of
from velesio_core.tiny_pipeline import MODEL_NAME

SMALL = {"prompt": "a mossy stone wall", "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler a"}
#: A job slow enough to watch (about a second or two on a shared 2-core machine).
SLOW = {"prompt": "a castle", "steps": 20, "width": 512, "height": 512, "sampler_name": "Euler"}


def txt2img(stack, body: dict, *, timeout: float = 120) -> requests.Response:
    return requests.post(stack.url("/sdapi/v1/txt2img"), json=body, auth=stack.basic, timeout=timeout)


def generated(stack, body: dict, path: str = "/sdapi/v1/txt2img") -> dict:
    response = requests.post(stack.url(path), json=body, auth=stack.basic, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def pixels(b64: str) -> np.ndarray:
    return np.asarray(png_of(b64).convert("RGB"), dtype=np.int16)


def use_checkpoint(stack, name: str) -> None:
    response = requests.post(stack.url("/sdapi/v1/options"), json={"sd_model_checkpoint": name}, auth=stack.basic)
    assert response.status_code == 200, response.text


def assert_a1111_error(response: requests.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail", "body", "errors"}, body
    assert "Traceback" not in response.text
    for word in words:
        assert word in body["detail"], body
    return body


def worker_metrics(stack) -> Scrape:
    """The worker's own Prometheus endpoint (METRICS_PORT), as Prometheus scrapes it."""
    return scrape(stack.worker_metrics_url)


def api_metrics(stack) -> Scrape:
    return scrape(stack.url("/metrics"), stack.auth)


def grew(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


@pytest.fixture(autouse=True)
def _single_file_checkpoint(sd_stack):
    use_checkpoint(sd_stack, CHECKPOINT_FILE)


def test_sd_models_lists_every_checkpoint_under_a1111_names(sd_stack, sd_models):
    models = requests.get(sd_stack.url("/sdapi/v1/sd-models"), auth=sd_stack.basic, timeout=10).json()
    digest = hashlib.sha256((sd_models.checkpoints / CHECKPOINT_FILE).read_bytes()).hexdigest()
    by_name = {model["model_name"]: model for model in models}
    assert set(by_name) == {"tiny-ldm", MODEL_NAME}
    single = by_name["tiny-ldm"]
    assert single["title"] == f"{CHECKPOINT_FILE} [{digest[:10]}]"
    assert single["hash"] == digest[:10] and single["sha256"] == digest
    assert single["filename"].endswith(CHECKPOINT_FILE)
    # The Unity client's fallback URL answers the same.
    assert requests.get(sd_stack.url("/api/sd-models"), auth=sd_stack.basic, timeout=10).json() == models


def test_txt2img_answers_raw_base64_pngs_with_a1111_parameters_and_a_json_info_string(sd_stack):
    answer = generated(sd_stack, {**SMALL, "seed": 1234, "negative_prompt": "blurry"})
    assert not answer["images"][0].startswith("data:")
    image = png_of(answer["images"][0])
    assert image.size == (64, 64)
    assert isinstance(answer["info"], str)
    info = json.loads(answer["info"])
    assert info["seed"] == 1234 and info["all_seeds"] == [1234]
    assert info["sampler_name"] == "Euler a" and info["width"] == 64 and info["steps"] == 3
    text = image.info["parameters"]
    assert text == info["infotexts"][0]
    lines = text.split("\n")
    assert lines[0] == SMALL["prompt"] and lines[1] == "Negative prompt: blurry"
    assert "Steps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, Size: 64x64" in lines[2]
    assert "Model: tiny-ldm" in lines[2]
    assert answer["parameters"]["prompt"] == SMALL["prompt"] and answer["parameters"]["seed"] == 1234


def test_a_random_seed_is_reported_and_reproduces_the_image(sd_stack):
    first = generated(sd_stack, {**SMALL, "seed": -1})
    second = generated(sd_stack, {**SMALL, "seed": -1})
    seed = json.loads(first["info"])["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert seed != json.loads(second["info"])["seed"]
    again = generated(sd_stack, {**SMALL, "seed": seed})
    assert np.array_equal(pixels(again["images"][0]), pixels(first["images"][0]))


def test_batch_size_and_n_iter_give_consecutive_seeds_each_reproducible_alone(sd_stack):
    answer = generated(sd_stack, {**SMALL, "seed": 50, "batch_size": 2, "n_iter": 2})
    info = json.loads(answer["info"])
    assert info["all_seeds"] == [50, 51, 52, 53] and len(answer["images"]) == 4
    alone = generated(sd_stack, {**SMALL, "seed": 53})
    assert np.abs(pixels(alone["images"][0]) - pixels(answer["images"][3])).max() <= 2
    assert not np.array_equal(pixels(answer["images"][0]), pixels(answer["images"][1]))


def test_legacy_karras_names_equal_the_scheduler_field(sd_stack):
    legacy = generated(sd_stack, {**SMALL, "seed": 3, "sampler_name": "Euler Karras"})
    split = generated(sd_stack, {**SMALL, "seed": 3, "sampler_name": "Euler", "scheduler": "Karras"})
    plain = generated(sd_stack, {**SMALL, "seed": 3, "sampler_name": "Euler"})
    assert np.array_equal(pixels(legacy["images"][0]), pixels(split["images"][0]))
    assert not np.array_equal(pixels(legacy["images"][0]), pixels(plain["images"][0]))
    info = json.loads(legacy["info"])
    assert (info["sampler_name"], info["scheduler"]) == ("Euler", "Karras")
    # The Unity client's hard-coded list: every name it offers is taken.
    for name in ["Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
                 "DPM fast", "DPM adaptive", "LMS Karras", "DPM2 Karras", "DPM2 a Karras", "DPM++ 2S a Karras",
                 "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "PLMS"]:  # fmt: skip
        response = txt2img(sd_stack, {**SMALL, "steps": 4, "sampler_name": name})
        assert response.status_code == 200, (name, response.text)


def test_samplers_and_schedulers_are_listed(sd_stack):
    samplers = requests.get(sd_stack.url("/sdapi/v1/samplers"), auth=sd_stack.basic).json()
    assert {"Euler a", "DPM++ 2M", "DDIM", "UniPC"} <= {sampler["name"] for sampler in samplers}
    assert all(set(sampler) == {"name", "aliases", "options"} for sampler in samplers)
    schedulers = requests.get(sd_stack.url("/sdapi/v1/schedulers"), auth=sd_stack.basic).json()
    assert {"Automatic", "Karras", "Exponential"} <= {schedule["label"] for schedule in schedulers}


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"sampler_name": "Euler z"}, 400, ["Euler a", "DPM++ 2M"]),
        ({"scheduler": "Wobbly"}, 400, ["Karras"]),
        ({"width": 32}, 400, ["width", "greater than or equal to 64"]),  # 100 is taken: rounded down to 96, as A1111
        ({"height": 16384}, 400, ["height"]),
        ({"width": 4096}, 400, ["larger than this server allows"]),
        ({"steps": "twenty"}, 400, ["steps"]),
        ({"steps": 0}, 400, ["steps"]),
        ({"cfg_scale": -1}, 400, ["cfg_scale"]),
        ({"batch_size": 1000}, 400, ["batch_size"]),
        ({"enable_hr": True, "hr_upscaler": "4x-UltraSharp"}, 400, ["4x-UltraSharp", "Lanczos"]),
        ({"enable_hr": True, "hr_scale": 100}, 400, ["hr_scale"]),
        ({"override_settings": {"CLIP_stop_at_last_layers": 40}}, 400, ["CLIP_stop_at_last_layers"]),
        ({"script_name": "x/y/z plot"}, 400, ["scripts"]),
        ({"prompt": "a <lora:nobody:0.5> wall"}, 400, ["nobody", LORA_NAME]),
        ({"override_settings": {"sd_model_checkpoint": "nope.safetensors"}}, 404, ["nope", CHECKPOINT_FILE]),
    ],
)
def test_bad_input_is_a_4xx_in_a1111_shape(sd_stack, change, status, words):
    assert_a1111_error(txt2img(sd_stack, {**SMALL, **change}), status, *words)


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
def test_bad_images_are_refused_before_queueing(sd_stack, change, status, words):
    body = {**SMALL, "init_images": [b64_png(Image.new("RGB", (64, 64), "red"))], **change}
    response = requests.post(sd_stack.url("/sdapi/v1/img2img"), json=body, auth=sd_stack.basic, timeout=30)
    assert_a1111_error(response, status, *words)


def test_not_json_and_not_an_object_are_400(sd_stack):
    response = requests.post(sd_stack.url("/sdapi/v1/txt2img"), data=b"{", auth=sd_stack.basic, timeout=10)
    assert_a1111_error(response, 400, "JSON")
    assert_a1111_error(txt2img(sd_stack, [1, 2]), 400, "object")


def test_auth_is_http_basic_with_the_token_as_password_or_bearer(sd_stack):
    missing = requests.post(sd_stack.url("/sdapi/v1/txt2img"), json=SMALL, timeout=10)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Incorrect username or password"}
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.post(sd_stack.url("/sdapi/v1/txt2img"), json=SMALL, auth=("unity", "wrong"), timeout=10)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
    for path in ("/api/sd-models", "/api/options"):
        assert requests.get(sd_stack.url(path), timeout=10).status_code == 401
    bearer = requests.post(sd_stack.url("/sdapi/v1/txt2img"), json=SMALL, headers=sd_stack.auth, timeout=60)
    assert bearer.status_code == 200


def test_img2img_uses_the_init_image_and_the_denoising_strength(sd_stack):
    red, blue = b64_png(Image.new("RGB", (64, 64), "red")), b64_png(Image.new("RGB", (96, 80), "blue"))
    body = {**SMALL, "seed": 9, "denoising_strength": 0.5}
    from_red = generated(sd_stack, {**body, "init_images": [red]}, "/sdapi/v1/img2img")
    from_blue = generated(sd_stack, {**body, "init_images": [blue]}, "/sdapi/v1/img2img")
    assert png_of(from_blue["images"][0]).size == (64, 64)  # resized to the asked size, as A1111 does
    assert not np.array_equal(pixels(from_red["images"][0]), pixels(from_blue["images"][0]))
    stronger = generated(sd_stack, {**body, "denoising_strength": 0.9, "init_images": [red]}, "/sdapi/v1/img2img")
    assert not np.array_equal(pixels(from_red["images"][0]), pixels(stronger["images"][0]))
    info = json.loads(from_red["info"])
    assert info["denoising_strength"] == 0.5 and "Denoising strength: 0.5" in info["infotexts"][0]
    assert from_red["parameters"]["init_images"] is None  # not echoed unless include_init_images


def test_inpainting_changes_only_the_masked_part(sd_stack):
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # the left half
    body = {**SMALL, "seed": 4, "init_images": [b64_png(original)], "mask": b64_png(mask), "mask_blur": 0,
            "denoising_strength": 1.0}  # fmt: skip
    result = pixels(generated(sd_stack, body, "/sdapi/v1/img2img")["images"][0])
    source = np.asarray(original, dtype=np.int16)
    assert np.array_equal(result[:, 32:], source[:, 32:])
    assert np.abs(result[:, :32] - source[:, :32]).mean() > 10
    inverted = pixels(generated(sd_stack, {**body, "inpainting_mask_invert": 1}, "/sdapi/v1/img2img")["images"][0])
    assert np.array_equal(inverted[:, :32], source[:, :32])


def test_options_switch_the_checkpoint_by_title_or_model_name_as_a_queued_job(sd_stack, sd_models):
    single = generated(sd_stack, {**SMALL, "seed": 8})
    use_checkpoint(sd_stack, MODEL_NAME)  # by model_name, as the Unity client sends it
    options = requests.get(sd_stack.url("/sdapi/v1/options"), auth=sd_stack.basic).json()
    assert options["sd_model_checkpoint"] == MODEL_NAME
    folder = generated(sd_stack, {**SMALL, "seed": 8})
    assert "Model: velesio-tiny-sd" in json.loads(folder["info"])["infotexts"][0]
    assert not np.array_equal(pixels(single["images"][0]), pixels(folder["images"][0]))
    title = next(m["title"] for m in requests.get(sd_stack.url("/sdapi/v1/sd-models"), auth=sd_stack.basic).json()
                 if m["model_name"] == "tiny-ldm")  # fmt: skip
    response = requests.post(sd_stack.url("/api/options"), json={"sd_model_checkpoint": title}, auth=sd_stack.basic)
    assert response.status_code == 200 and response.json() is None
    back = generated(sd_stack, {**SMALL, "seed": 8})
    assert np.array_equal(pixels(single["images"][0]), pixels(back["images"][0]))
    unknown = requests.post(sd_stack.url("/sdapi/v1/options"), json={"sd_model_checkpoint": "nope"},
                            auth=sd_stack.basic)  # fmt: skip
    assert_a1111_error(unknown, 400, "nope", CHECKPOINT_FILE)


def test_override_settings_pick_a_checkpoint_and_a_vae_for_one_request(sd_stack):
    base = generated(sd_stack, {**SMALL, "seed": 21})
    folder = generated(sd_stack, {**SMALL, "seed": 21, "override_settings": {"sd_model_checkpoint": MODEL_NAME}})
    assert "Model: velesio-tiny-sd" in json.loads(folder["info"])["infotexts"][0]
    vae = generated(sd_stack, {**SMALL, "seed": 21, "override_settings": {"sd_vae": VAE_FILE}})
    assert f"VAE: {VAE_FILE}" in json.loads(vae["info"])["infotexts"][0]
    assert not np.array_equal(pixels(base["images"][0]), pixels(vae["images"][0]))
    again = generated(sd_stack, {**SMALL, "seed": 21})
    assert np.array_equal(pixels(base["images"][0]), pixels(again["images"][0]))


def test_a_lora_from_the_prompt_changes_the_image_by_its_weight(sd_stack):
    plain = pixels(generated(sd_stack, {**SMALL, "seed": 12})["images"][0])
    styled = generated(sd_stack, {**SMALL, "seed": 12, "prompt": f"a wall <lora:{LORA_NAME}:1>"})
    assert not np.array_equal(plain, pixels(styled["images"][0]))
    assert json.loads(styled["info"])["prompt"] == f"a wall <lora:{LORA_NAME}:1>"  # A1111 keeps the tag
    off = generated(sd_stack, {**SMALL, "seed": 12, "prompt": f"{SMALL['prompt']} <lora:{LORA_NAME}:0>"})
    assert np.abs(plain - pixels(off["images"][0])).max() <= 1
    assert np.array_equal(plain, pixels(generated(sd_stack, {**SMALL, "seed": 12})["images"][0]))


def test_tiling_makes_a_different_image(sd_stack):
    plain = pixels(generated(sd_stack, {**SMALL, "seed": 30})["images"][0])
    tiled = pixels(generated(sd_stack, {**SMALL, "seed": 30, "tiling": True})["images"][0])
    assert not np.array_equal(plain, tiled)
    assert np.array_equal(plain, pixels(generated(sd_stack, {**SMALL, "seed": 30})["images"][0]))


def _in_background(function, *args):
    result: dict = {}

    def run():
        try:
            result["value"] = function(*args)
        except BaseException as error:  # reported by the test
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _progress(stack) -> dict:
    # No credentials: the Unity client polls progress without them.
    return requests.get(stack.url("/sdapi/v1/progress"), timeout=10).json()


def test_progress_reports_the_real_steps_of_the_running_job_without_credentials(sd_stack):
    thread, result = _in_background(txt2img, sd_stack, {**SLOW, "seed": 1})
    seen = []
    while thread.is_alive():
        seen.append(_progress(sd_stack))
        time.sleep(0.05)
    thread.join()
    assert result["value"].status_code == 200
    running = [p for p in seen if 0 < p["progress"] < 1]
    assert running, seen[-3:]
    assert all(p["state"]["sampling_steps"] == 20 for p in running)
    steps = [p["state"]["sampling_step"] for p in running]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert _progress(sd_stack)["progress"] == 0


def _wait_for_step(stack, step: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _progress(stack)["state"]["sampling_step"] >= step:
            return
        time.sleep(0.02)
    raise TimeoutError(f"the job never reached step {step}")


def test_interrupt_ends_the_job_with_what_is_done(sd_stack):
    before = worker_metrics(sd_stack)
    thread, result = _in_background(txt2img, sd_stack, {**SLOW, "n_iter": 3})
    _wait_for_step(sd_stack, 2)
    assert requests.post(sd_stack.url("/sdapi/v1/interrupt"), auth=sd_stack.basic).status_code == 200
    thread.join(timeout=60)
    answer = result["value"].json()
    assert result["value"].status_code == 200 and len(answer["images"]) == 1  # of 3
    png_of(answer["images"][0])
    after = worker_metrics(sd_stack)
    # An interrupted job answered with what it made: that one image counts, and the job is a success.
    assert grew(before, after, "velesio_worker_images_total", kind="txt2img") == 1
    assert grew(before, after, "velesio_worker_jobs_total", kind="txt2img", outcome="ok") == 1


def test_skip_gives_up_the_current_image_only(sd_stack):
    thread, result = _in_background(txt2img, sd_stack, {**SLOW, "seed": 70, "n_iter": 2})
    _wait_for_step(sd_stack, 2)
    assert requests.post(sd_stack.url("/sdapi/v1/skip"), auth=sd_stack.basic).status_code == 200
    thread.join(timeout=120)
    answer = result["value"].json()
    assert json.loads(answer["info"])["all_seeds"] == [70, 71]


def test_image_jobs_run_one_at_a_time_waiting_ones_see_their_place_and_the_llm_is_not_blocked(sd_stack):
    threads = []
    for index in range(3):
        body = {**SLOW, "steps": 8, "force_task_id": f"place-{index}"}
        threads.append(_in_background(txt2img, sd_stack, body))
        time.sleep(0.2)
    places, peaks = [], []
    completion_time = None
    while any(thread.is_alive() for thread, _ in threads):
        task = requests.post(sd_stack.url("/internal/progress"), json={"id_task": "place-2"}, auth=sd_stack.basic)
        places.append(task.json())
        peaks.append(_progress(sd_stack)["state"]["queue_running"])
        if completion_time is None:
            started = time.monotonic()
            answer = requests.post(sd_stack.url("/completion"), json={"prompt": "hi", "n_predict": 4},
                                   headers=sd_stack.auth, timeout=60)  # fmt: skip
            assert answer.status_code == 200
            completion_time = time.monotonic() - started
        time.sleep(0.05)
    for thread, result in threads:
        thread.join()
        assert result["value"].status_code == 200
    assert max(peaks) == 1
    waiting = [place for place in places if place["queued"]]
    assert waiting and waiting[0]["queue_position"] >= 1 and waiting[0]["textinfo"].startswith("In queue")
    assert any(place["active"] for place in places)
    done = requests.post(sd_stack.url("/internal/progress"), json={"id_task": "place-2"}, auth=sd_stack.basic)
    assert done.json()["completed"] and not done.json()["queued"]
    assert completion_time < 5  # an LLM job does not wait behind images


def test_a_client_that_leaves_stops_its_image_job_at_the_next_step(sd_stack):
    import socket

    before = worker_metrics(sd_stack)
    body = json.dumps({**SLOW, "steps": 150}).encode()
    credentials = base64.b64encode(f"unity:{sd_stack.token}".encode()).decode()
    host, port = sd_stack.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Authorization: Basic " + credentials.encode() + b"\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
        _wait_for_step(sd_stack, 2)
    left_at = time.monotonic()
    wait_until_idle = time.monotonic() + 30
    while _progress(sd_stack)["state"]["queue_running"] and time.monotonic() < wait_until_idle:
        time.sleep(0.02)
    assert _progress(sd_stack)["state"]["queue_running"] == 0
    assert time.monotonic() - left_at < 5  # 150 steps would take far longer
    cancelled = {"kind": "txt2img", "outcome": "cancelled"}
    wait_until(lambda: grew(before, worker_metrics(sd_stack), "velesio_worker_jobs_total", **cancelled) == 1,
               timeout=10, what="the cancelled image job being counted")  # fmt: skip
    assert grew(before, worker_metrics(sd_stack), "velesio_worker_images_total") == 0


def test_without_an_image_worker_image_requests_are_503_at_once(redis_server, tiny_model, logs_dir):
    from tests.support.processes import start_stack

    stack = start_stack(redis_server.url(8), tiny_model, logs_dir, worker=False, name="noimages")
    try:
        started = time.monotonic()
        response = txt2img(stack, SMALL, timeout=30)
        body = assert_a1111_error(response, 503, "RUN_SD")
        assert time.monotonic() - started < 5 and response.headers["Retry-After"] and body["error"] == "RuntimeError"
        assert requests.get(stack.url("/sdapi/v1/progress"), timeout=10).json()["progress"] == 0
    finally:
        stack.stop()


def test_metrics_count_the_images_the_client_received_and_time_the_denoising_steps(sd_stack):
    before_worker, before_api = worker_metrics(sd_stack), api_metrics(sd_stack)
    started = time.monotonic()
    answer = generated(sd_stack, {**SMALL, "steps": 4, "batch_size": 2, "n_iter": 2})
    elapsed = time.monotonic() - started
    refused = txt2img(sd_stack, {**SMALL, "override_settings": {"sd_model_checkpoint": "no-such-checkpoint"}})
    assert_a1111_error(refused, 404, "no-such-checkpoint")
    after_worker, after_api = worker_metrics(sd_stack), api_metrics(sd_stack)

    received = len(answer["images"])
    assert received == 4
    assert grew(before_worker, after_worker, "velesio_worker_images_total", kind="txt2img") == received
    assert grew(before_worker, after_worker, "velesio_worker_images_total", checkpoint="tiny-ldm") == received
    speeds = "velesio_worker_diffusion_steps_per_second"
    assert grew(before_worker, after_worker, speeds + "_count", checkpoint="tiny-ldm") == 1
    # 2 batches of 4 steps, timed inside a job that took less than the client's whole wait.
    assert grew(before_worker, after_worker, speeds + "_sum", checkpoint="tiny-ldm") >= 8 / elapsed
    for outcome in ("ok", "invalid"):  # the unknown checkpoint was refused by the worker
        assert grew(before_worker, after_worker, "velesio_worker_jobs_total", kind="txt2img", outcome=outcome) == 1
    for family in ("velesio_queue_wait_seconds_count", "velesio_job_run_seconds_count"):
        assert grew(before_worker, after_worker, family, kind="txt2img", model="stable-diffusion") == 2
    assert after_worker.value("velesio_worker_backend_up", backend="sd") == 1
    assert after_worker.value("velesio_worker_backend_up", backend="llamacpp") == 1
    assert after_worker.value("velesio_worker_slots") == 3  # two LLM slots and the pipeline
    assert after_worker.has("velesio_worker_info", backend="llamacpp+sd")

    route = {"dialect": "a1111", "route": "/sdapi/v1/txt2img"}
    assert grew(before_api, after_api, "velesio_api_requests_total", status="200", **route) == 1
    assert grew(before_api, after_api, "velesio_api_requests_total", status="404", **route) == 1
    assert after_api.value("velesio_workers", model="stable-diffusion") == 1
    assert after_api.has("velesio_queue_waiting_jobs", model="stable-diffusion", kind="sd")
    # The Unity client's fallbacks are A1111's, not Ollama's, in the metrics as in their errors.
    requests.get(sd_stack.url("/api/sd-models"), auth=sd_stack.basic, timeout=10)
    assert api_metrics(sd_stack).value("velesio_api_requests_total", dialect="a1111", route="/api/sd-models") >= 1
