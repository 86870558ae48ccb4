"""AUTOMATIC1111's ``force_task_id`` never names a job: each request is a job of its own, and a
task id is read back (POST /internal/progress) only by the token that sent it."""

from __future__ import annotations

import json
import threading
import time

import requests

from tests.e2e.test_a1111 import SLOW, txt2img

SECOND_TOKEN_AUTH = ("other-player", "second-token-sd")


def post(stack, body: dict, auth) -> requests.Response:
    return requests.post(stack.url("/sdapi/v1/txt2img"), json=body, auth=auth, timeout=180)


def task_progress(stack, task: str, auth) -> dict:
    response = requests.post(stack.url("/internal/progress"), json={"id_task": task}, auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_two_clients_with_the_same_task_id_each_get_their_own_image(sd_stack):
    answers: dict[int, requests.Response] = {}

    def send(seed: int, auth) -> None:
        answers[seed] = post(sd_stack, {**SLOW, "steps": 6, "seed": seed, "force_task_id": "shared-id"}, auth)

    threads = [threading.Thread(target=send, args=(11, sd_stack.basic)),
               threading.Thread(target=send, args=(22, SECOND_TOKEN_AUTH))]  # fmt: skip
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    for seed, answer in answers.items():
        assert answer.status_code == 200, answer.text
        assert json.loads(answer.json()["info"])["seed"] == seed
    assert answers[11].json()["images"] != answers[22].json()["images"]


def test_a_task_id_reads_back_only_for_the_token_that_sent_it(sd_stack):
    busy = threading.Thread(target=txt2img, args=(sd_stack, {**SLOW, "steps": 30, "seed": 5}))
    busy.start()
    time.sleep(0.3)
    mine = threading.Thread(target=post, args=(sd_stack, {**SLOW, "steps": 2, "force_task_id": "mine"}, sd_stack.basic))
    mine.start()
    try:
        deadline = time.monotonic() + 60
        seen_queued = False
        while mine.is_alive() and time.monotonic() < deadline and not seen_queued:
            seen_queued = task_progress(sd_stack, "mine", sd_stack.basic)["queued"]
            if seen_queued:
                other = task_progress(sd_stack, "mine", SECOND_TOKEN_AUTH)
                assert not other["queued"] and not other["active"] and other["queue_position"] is None
            time.sleep(0.05)
        assert seen_queued
    finally:
        busy.join()
        mine.join()
