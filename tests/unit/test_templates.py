from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velesio_core.dialects.llamacpp.templates import NAMES, template_name
from velesio_core.tiny_model import CHAT_TEMPLATE

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant"
    "<|end_header_id|>\\n\\n' }}"
)


def test_exact_templates_llm_for_unity_knows():
    assert template_name(CHATML) == "chatml"
    assert template_name(LLAMA3) == "llama3 chat"


def test_the_tiny_models_tool_calling_template_is_chatml_to_llm_for_unity():
    assert template_name(CHAT_TEMPLATE) == "chatml"


@pytest.mark.parametrize(
    ("chat_template", "expected"),
    [
        ("{{ '<|im_start|>' + role }} {# a variant #}", "chatml"),
        ("<|im_start|>{% if enable_thinking %}<think>{% endif %}", "qwen3"),
        ("{{ bos_token }}<start_of_turn>user", "gemma"),
        ("[INST] <<SYS>>", "llama chat"),
        ("{{ '[INST] ' + content + ' [/INST]' }}", "mistral chat"),
        ("<|user|>\n{{ content }}<|end|>\n<|assistant|>", "phi-3"),
    ],
)
def test_a_template_that_is_not_exact_is_recognised_by_its_markers(chat_template, expected):
    assert template_name(chat_template) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["Qwen3 8B Instruct"], "qwen3"),
        (["Qwen2.5 7B"], "chatml"),
        (["Phi-4-mini-instruct"], "phi-4-mini"),
        (["Phi-3.5 Mini"], "phi-3.5"),
        ([None, "Meta-Llama-3-8B-Instruct.Q4_K_M"], "llama3 chat"),
        (["Mistral-7B-v0.3"], "mistral chat"),
        (["mystery-model"], "chatml"),
    ],
)
def test_names_match_longest_first_and_fall_back_to_chatml(names, expected):
    assert template_name(None, names) == expected


@given(st.one_of(st.none(), st.text()), st.lists(st.one_of(st.none(), st.text()), max_size=3))
def test_the_answer_is_always_a_name_llm_for_unity_knows(chat_template, names):
    assert template_name(chat_template, names) in NAMES
