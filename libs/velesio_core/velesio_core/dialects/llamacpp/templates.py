"""Which of LLM for Unity's chat templates a model uses, by name.

LLM for Unity v2 renders chats on the client and asks the server ``POST /template`` for the
*name* of the template, which it looks up in a fixed dictionary (an unknown name throws
KeyNotFoundException; a Jinja string, which is what llama.cpp's /props returns, does not work).

The mapping follows LLM for Unity's own (LLMChatTemplates.cs, ``ChatTemplate.FromGGUF``): an exact
match of the GGUF chat template, then the model's name or file name, else ``chatml``. Two
deliberate differences: a template that is not an exact match is still recognised by its
distinctive markers (a model whose ChatML template differs by one space is still ChatML), and
names are matched longest first, so "qwen3" is not taken for "qwen" (chatml).
"""

from __future__ import annotations

from collections.abc import Iterable

#: The names LLM for Unity v2.5.2 knows (LLMChatTemplates.cs).
NAMES = (
    "chatml",
    "alpaca",
    "gemma",
    "mistral chat",
    "mistral instruct",
    "llama3 chat",
    "llama chat",
    "llama",
    "phi-4-mini",
    "phi-4",
    "phi-3.5",
    "phi-3",
    "phi",
    "deepseek-r1",
    "deepseek-v3",
    "deepseek-v2",
    "vicuna",
    "zephyr",
    "qwen3",
    "bitnet",
)
DEFAULT = "chatml"

_EXACT = {
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}": "chatml",
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' +"
    " message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0"
    " %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant"
    "<|end_header_id|>\\n\\n' }}": "llama3 chat",
}

# (all markers that must appear, template name), most specific first.
_MARKERS = (
    (("<|im_start|>", "<think>"), "qwen3"),
    (("<|im_start|>",), "chatml"),
    (("<|start_header_id|>",), "llama3 chat"),
    (("<start_of_turn>",), "gemma"),
    (("<|im_sep|>",), "phi-4"),
    (("<|assistant|>", "<|end|>"), "phi-3"),
    (("<\uff5cAssistant\uff5c>", "<think>"), "deepseek-r1"),
    (("<\uff5cAssistant\uff5c>",), "deepseek-v3"),
    (("[INST]", "<<SYS>>"), "llama chat"),
    (("[INST]",), "mistral chat"),
    (("### Instruction:",), "alpaca"),
    (("<|user|>", "</s>"), "zephyr"),
    (("USER:", "ASSISTANT:"), "vicuna"),
)

# Substrings of a model's name or file name (LLM for Unity's GetNameMatches), longest first.
_NAME_MATCHES = sorted(
    {
        "chatml": "chatml",
        "hermes": "chatml",
        "qwen": "chatml",
        "qwen3": "qwen3",
        "alpaca": "alpaca",
        "gemma": "gemma",
        "mistral": "mistral chat",
        "llama-3": "llama3 chat",
        "llama v3": "llama3 chat",
        "llama-2": "llama chat",
        "llama v2": "llama chat",
        "phi-4-mini": "phi-4-mini",
        "phi-4": "phi-4",
        "phi-3.5": "phi-3.5",
        "phi-3": "phi-3",
        "phi-2": "phi",
        "deepseek-r1": "deepseek-r1",
        "deepseek-v3": "deepseek-v3",
        "deepseek-v2": "deepseek-v2",
        "vicuna": "vicuna",
        "zephyr": "zephyr",
        "bitnet": "bitnet",
    }.items(),
    key=lambda item: -len(item[0]),
)


def template_name(chat_template: str | None, model_names: Iterable[str | None] = ()) -> str:
    """The LLM for Unity template name for a model, ``chatml`` when nothing matches."""
    if chat_template:
        exact = _EXACT.get(chat_template.strip())
        if exact:
            return exact
        for markers, name in _MARKERS:
            if all(marker in chat_template for marker in markers):
                return name
    for model_name in model_names:
        if not model_name:
            continue
        lowered = model_name.lower()
        for match, name in _NAME_MATCHES:
            if match in lowered:
                return name
    return DEFAULT
