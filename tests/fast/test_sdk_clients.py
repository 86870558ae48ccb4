"""The official `openai` and `ollama` Python clients against the API in-process: their own
parsers read velesio's answers, streams and errors, through httpx's ASGI transport.

The fast layer (see tests/support/fake_backend.py): the same clients run against the real
processes in tests/e2e/test_openai.py and tests/e2e/test_ollama.py.
"""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from tests.fast.conftest import TOKEN, run
from tests.support.fake_backend import MODEL, STORY, embedding

MESSAGES = [{"role": "user", "content": "Tell me a story"}]


def openai_client(stack, key: str = TOKEN) -> openai.AsyncOpenAI:
    transport = httpx.ASGITransport(app=stack.app)
    return openai.AsyncOpenAI(
        base_url="http://velesio/v1", api_key=key, max_retries=0, http_client=httpx.AsyncClient(transport=transport)
    )


def ollama_client(stack) -> ollama.AsyncClient:
    transport = httpx.ASGITransport(app=stack.app)
    return ollama.AsyncClient(host="http://velesio", headers={"Authorization": f"Bearer {TOKEN}"}, transport=transport)


def test_openai_sdk_chat_whole_and_streamed(stack):
    async def go():
        async with openai_client(stack) as sdk:
            whole = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
            stream = await sdk.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=5, stream=True, stream_options={"include_usage": True}
            )
            return whole, [chunk async for chunk in stream]

    whole, chunks = run(go)
    assert whole.choices[0].message.content == "".join(STORY[:5]) and whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in with_choices) == "".join(STORY[:5])
    assert with_choices[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_openai_sdk_completions_embeddings_and_models(stack):
    async def go():
        async with openai_client(stack) as sdk:
            completion = await sdk.completions.create(model=MODEL, prompt="Once", max_tokens=3)
            embedded = await sdk.embeddings.create(model=MODEL, input=["a castle"])
            as_base64 = await sdk.embeddings.create(model=MODEL, input="a castle", encoding_format="base64")
            models = [model.id async for model in sdk.models.list()]
            return completion, embedded, as_base64, models, await sdk.models.retrieve(MODEL)

    completion, embedded, as_base64, models, retrieved = run(go)
    assert completion.choices[0].text == "".join(STORY[:3])
    assert embedded.data[0].embedding == pytest.approx(embedding("a castle"))
    assert models == [MODEL] and retrieved.id == MODEL
    assert as_base64.data[0].embedding  # the SDK read it


def test_openai_sdk_reads_n_choices_logprobs_and_any_model_name(stack):
    async def go():
        async with openai_client(stack) as sdk:
            return await sdk.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=2, n=2, logprobs=True, top_logprobs=1
            )

    answer = run(go)
    assert [choice.index for choice in answer.choices] == [0, 1]
    assert [entry.token for entry in answer.choices[1].logprobs.content] == list(STORY[:2])
    assert answer.usage.completion_tokens == 4


@pytest.mark.parametrize("events_per_read", [1, 4])
def test_openai_sdk_streams_n_choices_interleaved_with_their_usage(stack, events_per_read):
    # With 4, each choice's events arrive in fours, and each four goes out in one write.
    stack.llm.events_per_read = events_per_read

    async def go():
        async with openai_client(stack) as sdk:
            stream = await sdk.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=3, n=2, stream=True, stream_options={"include_usage": True}
            )
            return [chunk async for chunk in stream]

    chunks = run(go)
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "".join(STORY[:3]), 1: "".join(STORY[:3])}
    finished = [choice.index for chunk in chunks for choice in chunk.choices if choice.finish_reason == "length"]
    assert sorted(finished) == [0, 1]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6


def test_openai_sdk_errors_are_its_own_exceptions(stack):
    async def go(call):
        async with openai_client(stack, key=call.get("key", TOKEN)) as sdk:
            await sdk.chat.completions.create(
                model=call.get("model", MODEL), messages=MESSAGES, **call.get("extra", {})
            )

    # With one model served any name is it; a name none of several serves is OpenAI's 404.
    stack.llm.also_serves = ("other",)
    with pytest.raises(openai.NotFoundError) as missing:
        run(go, {"model": "gpt-4o"})
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        run(go, {"key": "wrong"})
    with pytest.raises(openai.BadRequestError):
        run(go, {"extra": {"temperature": 3}})


def test_openai_sdk_raises_on_an_error_mid_stream(make_stack):
    stack = make_stack(JOB_TIMEOUT="0.3")
    stack.llm.stall_after = 2

    async def go():
        async with openai_client(stack) as sdk:
            stream = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            async for _ in stream:
                pass

    with pytest.raises(openai.APIError, match=r"0\.3 s"):
        run(go)


def test_ollama_client_chat_generate_and_models(stack):
    async def go():
        client = ollama_client(stack)
        chat = await client.chat(model=MODEL, messages=MESSAGES, options={"num_predict": 4})
        streamed = [part async for part in await client.chat(model=MODEL, messages=MESSAGES, stream=True)]
        generated = await client.generate(model=MODEL, prompt="Once", raw=True, options={"num_predict": 2})
        return chat, streamed, generated, await client.list(), await client.show(MODEL), await client.ps()

    chat, streamed, generated, listed, shown, running = run(go)
    assert chat.message.content == "".join(STORY[:4]) and chat.done_reason == "length" and chat.eval_count == 4
    assert chat.total_duration >= chat.eval_duration > 0
    assert "".join(part.message.content for part in streamed) == "".join(STORY) and streamed[-1].done
    assert generated.response == "".join(STORY[:2])
    assert [model.model for model in listed.models] == [f"{MODEL}:latest"]
    assert "completion" in shown.capabilities and running.models[0].context_length > 0


def test_ollama_client_embeddings_and_errors(stack):
    async def go():
        client = ollama_client(stack)
        return await client.embed(model=MODEL, input=["a castle"])

    assert run(go).embeddings == [pytest.approx(embedding("a castle"))]

    async def missing():
        await ollama_client(stack).chat(model="llama3.2", messages=MESSAGES)

    with pytest.raises(ollama.ResponseError) as raised:
        run(missing)
    assert raised.value.status_code == 404 and "llama3.2" in raised.value.error
