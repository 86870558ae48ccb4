"""The Ollama backend (RUN_OLLAMA=true) end to end, against a real server speaking Ollama's API.

No Ollama binary can be installed here, so the Ollama server is velesio itself: the session's
main stack (llama-server behind velesio's Ollama dialect). A second stack runs its jobs through
the official `ollama` client against it. With greedy sampling, every dialect of the Ollama-backed
stack must answer what the llama-server-backed stack answers.
"""

from __future__ import annotations

import subprocess
import sys

import ollama
import openai
import orjson
import pytest
import requests

from tests.support.llmunity import post_chunks, v2_parse_cumulative, v3_concatenate
from tests.support.metrics import scrape
from tests.support.processes import busy_slots, llama_metric, service_env, start_stack, wait_until

GREEDY = {"temperature": 0, "seed": 3}
MESSAGES = [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}]


@pytest.fixture(scope="module")
def via_ollama(stack, redis_server, tiny_model, logs_dir):
    redis_server.client(6).flushdb()
    running = start_stack(
        redis_server.url(6), tiny_model, logs_dir, name="ollama", RUN_LLAMACPP="false", RUN_OLLAMA="true",
        OLLAMA_SERVER_URL=stack.base_url, OLLAMA_API_KEY=stack.token, OLLAMA_MODEL="tiny", LLAMA_CTX="2048",
    )  # fmt: skip
    yield running
    running.stop()


def post(stack, path: str, body: dict) -> requests.Response:
    return requests.post(stack.url(path), json=body, headers=stack.auth, timeout=60)


def test_it_serves_the_ollama_servers_models(via_ollama):
    assert [m["id"] for m in requests.get(via_ollama.url("/v1/models")).json()["data"]] == ["tiny:latest"]
    props = requests.get(via_ollama.url("/props"), headers=via_ollama.auth).json()
    assert props["default_generation_settings"]["n_ctx"] == 2048  # asked of Ollama as num_ctx
    # The Ollama server's template is the model's ChatML: LLM for Unity gets "chatml".
    assert post(via_ollama, "/template", {}).json() == {"template": "chatml"}


def test_llama_cpp_completion_through_ollama(via_ollama, stack):
    body = {"prompt": "Once upon a time", "n_predict": 10, **GREEDY}
    expected = post(stack, "/completion", body).json()["content"]
    whole = post(via_ollama, "/completion", body).json()
    assert whole["content"] == expected and whole["stop"] is True and whole["tokens_predicted"] == 10

    status, _, chunks = post_chunks(via_ollama.url("/completion"), orjson.dumps({**body, "stream": True}),
                                    via_ollama.auth)  # fmt: skip
    chunks = list(chunks)
    assert status == 200 and v3_concatenate(chunks)[0] == expected
    assert v2_parse_cumulative(b"".join(chunks).decode()) == expected.strip()


def test_openai_chat_through_ollama(via_ollama, stack):
    expected = post(stack, "/v1/chat/completions", {"model": "tiny", "messages": MESSAGES, "max_tokens": 8, **GREEDY})
    with openai.OpenAI(base_url=via_ollama.url("/v1"), api_key=via_ollama.token, max_retries=0) as sdk:
        answer = sdk.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, **GREEDY)
        streamed = sdk.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, stream=True, **GREEDY)
        pieces = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert answer.choices[0].message.content == expected.json()["choices"][0]["message"]["content"] == pieces
    assert answer.usage.completion_tokens == 8 and answer.choices[0].finish_reason == "length"


def test_ollama_chat_through_ollama(via_ollama, stack):
    options = {"num_predict": 8, **GREEDY}
    with ollama.Client(host=stack.base_url, headers=stack.auth) as direct:
        expected = direct.chat(model="tiny", messages=MESSAGES, options=options).message.content
    with ollama.Client(host=via_ollama.base_url, headers=via_ollama.auth) as sdk:
        assert sdk.chat(model="tiny", messages=MESSAGES, options=options).message.content == expected
        streamed = sdk.chat(model="tiny", messages=MESSAGES, options=options, stream=True)
        assert "".join(chunk.message.content for chunk in streamed) == expected


def test_an_ollama_worker_is_measured_like_any_other(via_ollama):
    # Ollama itself has no metrics; its worker reports from Ollama's own counts.
    before = scrape(via_ollama.worker_metrics_url)
    with ollama.Client(host=via_ollama.base_url, headers=via_ollama.auth) as sdk:
        answer = sdk.generate(model="tiny", prompt="Greet the king", options={"num_predict": 7, **GREEDY})
    generated = "velesio_worker_generated_tokens_total"
    # The worker counts a job once it has sent its result: maybe a moment after the client has it.
    wait_until(lambda: scrape(via_ollama.worker_metrics_url).value(generated) > before.value(generated),
               timeout=5, what="the worker counting the job")  # fmt: skip
    after = scrape(via_ollama.worker_metrics_url)
    assert after.value(generated) - before.value(generated) == answer.eval_count == 7
    prompt = "velesio_worker_prompt_tokens_total"
    assert after.value(prompt) - before.value(prompt) == answer.prompt_eval_count > 0
    assert after.value("velesio_worker_backend_up", backend="ollama") == 1
    speeds = "velesio_worker_generation_tokens_per_second_count"
    assert after.value(speeds) == before.value(speeds) + 1


def test_embeddings_through_ollama(via_ollama, stack):
    ours = post(via_ollama, "/v1/embeddings", {"model": "tiny", "input": "a castle"}).json()["data"][0]["embedding"]
    theirs = post(stack, "/v1/embeddings", {"model": "tiny", "input": "a castle"}).json()["data"][0]["embedding"]
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 1e-5


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tokenize", {"content": "hi"}),
        ("/detokenize", {"tokens": [1, 2]}),
        ("/apply-template", {"messages": MESSAGES}),
        ("/completion", {"prompt": [1, 2, 3], "n_predict": 2}),
        ("/completion", {"prompt": "hi", "grammar": 'root ::= "a"'}),
    ],
)
def test_what_ollama_cannot_do_is_a_501_naming_it(via_ollama, path, body):
    response = post(via_ollama, path, body)
    assert response.status_code == 501
    error = response.json()["error"]
    assert error["type"] == "not_supported_error" and "Ollama" in error["message"]


def test_slots_are_a_501_too(via_ollama):
    response = requests.get(via_ollama.url("/slots"), headers=via_ollama.auth)
    assert response.status_code == 501 and "Ollama" in response.json()["error"]["message"]


def test_a_client_leaving_stops_the_generation_on_the_ollama_server(via_ollama, stack):
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=30, what="llama-server idle")
    decoded_before = llama_metric(stack.llama_url, "llamacpp:n_decode_total")
    body = orjson.dumps({"prompt": "a long tale", "n_predict": 3000, "ignore_eos": True, "stream": True})
    status, _, chunks = post_chunks(via_ollama.url("/completion"), body, via_ollama.auth)
    assert status == 200
    for _ in range(5):
        next(chunks)
    chunks.close()
    # Our Ollama backend closes its stream; the Ollama server (velesio) cancels its own job.
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=10, what="the slot freeing")
    assert llama_metric(stack.llama_url, "llamacpp:n_decode_total") - decoded_before < 2000


def test_a_model_the_ollama_server_lacks_stops_the_worker_with_one_line(stack):
    env = service_env(
        RUN_LLAMACPP="false",
        RUN_OLLAMA="true",
        OLLAMA_SERVER_URL=stack.base_url,
        OLLAMA_API_KEY=stack.token,
        OLLAMA_MODEL="llama3.2",
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    result = subprocess.run([sys.executable, "-m", "velesio_worker.main"], env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip() and "INFO" not in line]
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("velesio: OLLAMA_MODEL: ") and "tiny:latest" in lines[0]
