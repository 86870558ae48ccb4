"""Ollama's stream encoder: what the clock it is given says, and tool calls merged from fragments."""

from __future__ import annotations

import orjson

from velesio_core.dialects.clock import Instant
from velesio_core.dialects.ollama import encode
from velesio_core.dialects.openai.tool_calls import merge_tool_call, merged_tool_calls
from velesio_core.events import Event, EventType

STARTED = Instant(wall=1_700_000_000.0, monotonic=100.0)
FINISHED = Instant(wall=1_700_000_002.5, monotonic=102.5)


def fragments() -> list[dict]:
    # As llama-server streams them: the id and name first, then the arguments in pieces,
    # a second call interleaved.
    return [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Paris"}'}},
    ]


def test_streamed_tool_call_fragments_merge_into_whole_calls_in_index_order():
    calls: dict[int, dict] = {}
    for fragment in fragments():
        merge_tool_call(calls, fragment)
    merged = merged_tool_calls(calls)
    assert [call["id"] for call in merged] == ["call_a", "call_b"]
    assert merged[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_chat_lines_send_tool_calls_whole_at_the_end_timed_by_the_clock_given():
    readings = iter([FINISHED])
    lines = encode.ChatLines(model="tiny", started=STARTED, clock=lambda: next(readings))
    for fragment in fragments():
        assert lines.encode(Event.of(EventType.TOKEN, {"tool_calls": [fragment]})) == []
    result = {"content": "", "stop_type": "tool_calls", "tokens_evaluated": 7, "tokens_predicted": 12}
    (final,) = lines.encode(Event.of(EventType.RESULT, result))
    body = orjson.loads(final)
    assert body["message"]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "get_time", "arguments": {}}},
    ]
    assert body["created_at"] == "2023-11-14T22:13:22.500000Z"
    assert body["total_duration"] == 2_500_000_000
    assert (body["prompt_eval_count"], body["eval_count"], body["done"]) == (7, 12, True)
