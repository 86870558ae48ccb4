"""What a drop-in for llama-server must read as llama-server reads it: model names, prompts,
response_fields."""

from __future__ import annotations

import pytest

from velesio_core.backends.base import ModelInfo
from velesio_core.backends.llamacpp.backend import nested_values
from velesio_core.dialects.llamacpp.decode import prompts
from velesio_core.errors import GatewayError
from velesio_core.registry import find_drop_in_model
from velesio_core.settings import Settings, SettingsError

TINY, QWEN = ModelInfo(id="tiny", n_ctx=512, slots=1), ModelInfo(id="qwen", n_ctx=512, slots=1)


@pytest.mark.parametrize("name", [None, "", "tiny", "gpt-3.5-turbo", "text-embedding-3-small"])
def test_with_one_model_any_name_is_that_model(name):
    assert find_drop_in_model([TINY], name, {}) is TINY


def test_with_several_models_names_and_aliases_choose_and_others_are_404():
    served = [TINY, QWEN]
    assert find_drop_in_model(served, None, {}) is TINY
    assert find_drop_in_model(served, "qwen", {}) is QWEN
    assert find_drop_in_model(served, "gpt-4o", {"gpt-4o": "qwen"}) is QWEN
    with pytest.raises(GatewayError) as raised:
        find_drop_in_model(served, "gpt-4o", {})
    assert raised.value.status == 404 and "tiny, qwen" in raised.value.message


def test_model_aliases_setting():
    aliases = Settings.from_env({"MODEL_ALIASES": "gpt-4o = qwen, text-embedding-3-small=nomic"}).model_aliases
    assert aliases == {"gpt-4o": "qwen", "text-embedding-3-small": "nomic"}
    with pytest.raises(SettingsError):
        Settings.from_env({"MODEL_ALIASES": "gpt-4o"})


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("hi", ["hi"]),
        ([1, 2, 3], [[1, 2, 3]]),
        (["hi", 3, "yo"], [["hi", 3, "yo"]]),
        ({"prompt_string": "hi"}, [{"prompt_string": "hi"}]),
        (["hi"], ["hi"]),
        (["hi", "yo"], ["hi", "yo"]),
        (["hi", [1, 2]], ["hi", [1, 2]]),
    ],
)
def test_prompts_split_as_llama_server_splits_them(prompt, expected):
    assert prompts(prompt) == expected


def test_response_fields_pick_nested_paths_under_their_path():
    answer = {"content": "x", "generation_settings": {"n_predict": 2}, "stop": True}
    fields = ["content", "generation_settings/n_predict", "nope/x", "stop/deeper"]
    assert nested_values(fields, answer) == {"content": "x", "generation_settings/n_predict": 2}
