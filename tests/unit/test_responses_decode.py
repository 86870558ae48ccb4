"""What a Responses API response keeps for the one that continues it (previous_response_id)."""

from __future__ import annotations

from velesio_core.dialects.responses.decode import stored_messages
from velesio_core.dialects.responses.schemas import ResponsesRequest

HISTORY = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_a_stored_response_keeps_its_history_and_input_but_not_its_instructions():
    request = ResponsesRequest(model="m", input="And now?", instructions="Be brief.")
    assert stored_messages(request, HISTORY) == [*HISTORY, {"role": "user", "content": "And now?"}]
    assert HISTORY[-1] == {"role": "assistant", "content": "Hello"}  # the history given is left as it was


def test_store_false_keeps_nothing_and_store_unset_keeps_it():
    assert stored_messages(ResponsesRequest(model="m", input="x", store=False), HISTORY) is None
    assert stored_messages(ResponsesRequest(model="m", input="x"), []) == [{"role": "user", "content": "x"}]
