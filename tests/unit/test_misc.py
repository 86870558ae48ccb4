from __future__ import annotations

import hashlib
import re
import threading

from gguf import GGUFReader

from velesio_core import schema_export
from velesio_core.cancellation import Cancellation, JobCancelled, Reason
from velesio_core.jobs import IMAGE_MODEL, Job, JobKind, Queue
from velesio_core.tiny_model import CHAT_TEMPLATE, MODEL_NAME, write_tiny_model


def test_the_tiny_model_is_reproducible_and_says_what_it_is(tmp_path):
    first = write_tiny_model(tmp_path / "a.gguf")
    second = write_tiny_model(tmp_path / "b.gguf")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    reader = GGUFReader(str(first))
    assert reader.get_field("general.architecture").contents() == "llama"
    assert reader.get_field("general.name").contents() == MODEL_NAME
    assert reader.get_field("tokenizer.chat_template").contents() == CHAT_TEMPLATE
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    assert "<0x00>" in tokens and "<0xFF>" in tokens and "<|im_end|>" in tokens


def test_committed_json_schemas_match_the_code():
    rendered = schema_export.render()
    for name, content in rendered.items():
        committed = schema_export.DEFAULT_DIRECTORY / name
        assert committed.is_file(), f"{name} is not committed: run velesio-schemas"
        assert committed.read_text() == content, f"{name} drifted from the code: run velesio-schemas"


def test_only_generation_holds_a_slot():
    generating = {JobKind.COMPLETION, JobKind.CHAT}
    assert {Queue.for_kind(kind) for kind in generating} == {Queue.LLM}
    text = [kind for kind in JobKind if kind not in generating and not kind.is_image]
    assert {Queue.for_kind(kind) for kind in text} == {Queue.LLM_AUX}
    assert {Queue.for_kind(kind) for kind in JobKind if kind.is_image} == {Queue.SD}


def test_each_model_has_queues_dramatiq_accepts_and_no_two_models_share_one():
    names = ["qwen2.5:7b", "qwen2.5_7b", "a/b c", "x" * 200, "llama3"]
    queues = [Queue.LLM.for_model(name) for name in names]
    assert len(set(queues)) == len(queues)
    assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9._-]*", queue) for queue in queues)
    assert Queue.LLM.for_model("llama3") != Queue.LLM_AUX.for_model("llama3")
    job = Job.create(JobKind.CHAT, {"messages": []}, model="qwen2.5:7b", deadline_s=1, timeout_s=1)
    assert job.queue == Queue.LLM.for_model("qwen2.5:7b")


def test_image_jobs_share_the_image_pipeline_queue_and_llms_have_no_image_queue():
    job = Job.create(JobKind.TXT2IMG, {"prompt": "x"}, model=IMAGE_MODEL, deadline_s=1, timeout_s=1)
    assert job.queue == Queue.SD.for_model(IMAGE_MODEL)
    assert Queue.of_model(IMAGE_MODEL) == (Queue.SD,)
    assert Queue.SD not in Queue.of_model("llama3")


def test_a_job_knows_when_it_expired():
    job = Job.create(JobKind.TOKENIZE, {"content": "x"}, model="m", deadline_s=10, timeout_s=5)
    assert not job.expired() and job.expired(now=job.deadline + 0.001)
    assert Job.model_validate(job.model_dump(mode="json")) == job


def test_cancellation_calls_back_once_and_checks_raise():
    cancellation = Cancellation()
    calls = []
    cancellation.on_cancel(lambda: calls.append("a"))
    unregister = cancellation.on_cancel(lambda: calls.append("b"))
    unregister()
    cancellation.check()
    cancellation.cancel(Reason.TIMEOUT)
    cancellation.cancel(Reason.CLIENT_LEFT)
    assert calls == ["a"] and cancellation.reason is Reason.TIMEOUT
    cancellation.on_cancel(lambda: calls.append("late"))
    assert calls == ["a", "late"]
    try:
        cancellation.check()
        raise AssertionError("check() did not raise")
    except JobCancelled as cancelled:
        assert cancelled.reason is Reason.TIMEOUT


def test_cancellation_from_many_threads_wins_once():
    cancellation = Cancellation()
    calls = []
    cancellation.on_cancel(lambda: calls.append(1))
    threads = [threading.Thread(target=cancellation.cancel, args=(Reason.CLIENT_LEFT,)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]
