"""A tiny llama-architecture GGUF model, written from scratch with the ``gguf`` package.

velesio uses it as the embedded default (``make up`` with no model configured) and in tests:
it loads in a real ``llama-server`` in milliseconds and generates thousands of tokens per
second on a CPU, so the gateway's own overhead dominates every measurement made with it.

The weights are random (seeded, so every build of the file is byte-identical) and the text it
writes is nonsense, but everything around the weights is real: a byte-fallback SentencePiece
vocabulary that can encode any UTF-8 text, ChatML control tokens and a ChatML chat template that
lists tools and writes tool calls the way llama.cpp parses them (see :data:`CHAT_TEMPLATE`).
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import numpy as np

# ChatML with tools in the Hermes 2 Pro / Qwen 2.5 way: the tools are listed in the system turn and
# a call is written as <tool_call>{"name": ..., "arguments": ...}</tool_call>. llama.cpp recognises
# the format by its <tool_call> marker, parses calls out of the output and, when a call is forced
# (tool_choice "required" or a named function), constrains sampling to one: so even random
# weights call tools. A chat without tools renders exactly as plain ChatML, and LLM for Unity's
# /template still maps the model to "chatml" by its <|im_start|> marker.
CHAT_TEMPLATE = r"""{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\n\n' }}{%- endif %}
{{- '# Tools\n\nYou may call one or more functions. Their signatures are within <tools></tools>:\n<tools>' }}
{%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}
{{- '\n</tools>\n\nFor each function call, return a json object with the function name and arguments within' +
    ' <tool_call></tool_call> XML tags:\n<tool_call>\n' +
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- elif messages[0]['role'] == 'system' %}
{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- set plain = message.role == 'user' or (message.role == 'system' and not loop.first) %}
{%- if plain or (message.role == 'assistant' and not message.tool_calls) %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\n<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}{{- tool_call.arguments | tojson }}
{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"""

MODEL_NAME = "velesio-tiny"
TOOL_CALL = "<tool_call>"

_EMBED = 64
_LAYERS = 2
_HEADS = 4
_FFN = 128
_CONTEXT = 32768

_WORDS = (
    "the a an and or of to in on at is are was be it this that with for as by from not but "
    "you we they he she i me my your our their his her its hello world game player quest sword "
    "shield dragon castle village forest river stone fire water wind light dark night day time "
    "story hero magic gold silver king queen knight friend enemy yes no maybe go come see look "
    "find take give tell ask know think want need have do make say good bad old new big small"
).split()


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of a byte-fallback SentencePiece vocabulary."""
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL, TokenType.CONTROL, TokenType.CONTROL]
    scores = [0.0] * len(tokens)

    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(TokenType.BYTE)
        scores.append(0.0)

    # SentencePiece merges the highest-scoring pieces first: whole words beat single characters.
    pieces = ["\u2581"] + list(string.ascii_letters + string.digits + string.punctuation)
    # A SentencePiece merge only happens when the merged piece is in the vocabulary, so every
    # prefix of a word must be there for the word to become one token.
    pieces += ["\u2581" + word[:end] for word in _WORDS for end in range(1, len(word) + 1)] + ["\n"]
    for piece in dict.fromkeys(pieces):
        tokens.append(piece)
        types.append(TokenType.NORMAL)
        scores.append(float(len(piece)) - 10.0)
    # One token for the tool call marker, as real tool-calling models have (last, so that every
    # other token keeps its id). User-defined: always matched in text, and written out as text.
    tokens.append(TOOL_CALL)
    types.append(TokenType.USER_DEFINED)
    scores.append(0.0)
    return tokens, scores, [int(t) for t in types]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _wire_tool_calls(tokens: list[str], embeddings: np.ndarray, blocks: list[dict[str, np.ndarray]],
                      output: np.ndarray) -> None:  # fmt: skip
    """Make the model start a tool call at the start of its answer when the prompt offers tools.

    Random weights alone would never write a call's opening ``<tool_call>`` + newline, and
    llama.cpp lets a model write text before a forced call, so no forced call would ever happen.
    Five residual dimensions are set aside, which only these weights write:

    0. the share of ``<tool_call>`` tokens in the context (tools listed in the prompt), which
       attention head 0 of the first layer, attending evenly to the whole context (a zero query),
       carries alone from dimension 4;
    1. "the current token is ``<tool_call>``", read by the newline's output row, so that the
       marker is always followed by the newline that opens a call;
    2. "the current token is a newline", as at the end of the generation prompt;
    3. a constant, read negatively: a bias;
    4. "this token is ``<tool_call>``", read by nothing but head 0.

    The marker's output row reads 0 + 2 - 3, so its logit is high only right after a newline in a
    prompt with tools: the first token of an answer, never inside a call's JSON, and in a prompt
    without tools (dimension 0 exactly zero) never. The end-of-turn token's row reads 0, so that
    an answer to a prompt with tools ends after its call rather than calling again and again,
    and so does the double quote's, so that the strings of a call's arguments end too.
    """
    head = _EMBED // _HEADS
    tool_call, newline = tokens.index(TOOL_CALL), tokens.index("\n")
    embeddings[:, :5] = 0.0
    embeddings[tool_call, 4] = 40.0  # about sqrt(_EMBED) after the RMS norm
    embeddings[tool_call, 1] = 8.0
    embeddings[newline, 2] = 8.0
    embeddings[:, 3] = 1.0
    first = blocks[0]
    first["attn_q"][:head] = 0.0
    first["attn_v"][:head] = 0.0
    first["attn_v"][0, 4] = 1.0
    first["attn_output"][:, :head] = 0.0
    first["attn_output"][0, 0] = 65.0
    for weights in blocks:
        weights["attn_output"][1:5] = 0.0
        weights["ffn_down"][:5] = 0.0
    for later in blocks[1:]:
        later["attn_output"][0] = 0.0
    output[:, :5] = 0.0
    output[tool_call] = 0.0
    output[tool_call, [0, 2, 3]] = (120.0, 60.0, -540.0)
    output[newline, 1] = 60.0
    output[tokens.index("<|im_end|>"), 0] = 40.0
    output[tokens.index('"'), 0] = 40.0


def write_tiny_model(path: str | Path, *, chat_template: str = CHAT_TEMPLATE, seed: int = 1234) -> Path:
    """Write the tiny model to ``path`` (atomically) and return the path."""
    from gguf import GGUFWriter, LlamaFileType

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = _vocabulary()
    rng = np.random.default_rng(seed)

    partial = path.with_name(path.name + ".partial")
    writer = GGUFWriter(str(partial), "llama")
    writer.add_name(MODEL_NAME)
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_context_length(_CONTEXT)
    writer.add_embedding_length(_EMBED)
    writer.add_block_count(_LAYERS)
    writer.add_feed_forward_length(_FFN)
    writer.add_head_count(_HEADS)
    writer.add_head_count_kv(_HEADS)
    writer.add_rope_dimension_count(_EMBED // _HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))

    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(4)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # No space before the text after a special token: llama.cpp checks a forced tool call's
    # grammar against the generation prompt's tokens ("<|im_start|>", "assistant\n"), and an
    # added space there fails the check.
    writer.add_add_space_prefix(False)
    writer.add_chat_template(chat_template)

    # Whole words get larger output rows than every other piece, so sampling mostly picks
    # readable words and rarely stops on an end-of-generation token by chance.
    output = _normal(rng, (len(tokens), _EMBED), 0.05)
    whole_words = {"\u2581" + word for word in _WORDS}
    output[np.array([token in whole_words for token in tokens])] *= 40.0

    embeddings = _normal(rng, (len(tokens), _EMBED), 0.5)
    blocks = []
    for _ in range(_LAYERS):
        attention = ("attn_q", "attn_k", "attn_v", "attn_output")
        projections = {name: _normal(rng, (_EMBED, _EMBED), 0.1) for name in attention}
        ffn = {"ffn_gate": _normal(rng, (_FFN, _EMBED), 0.1), "ffn_up": _normal(rng, (_FFN, _EMBED), 0.1),
               "ffn_down": _normal(rng, (_EMBED, _FFN), 0.1)}  # fmt: skip
        blocks.append(projections | ffn)
    _wire_tool_calls(tokens, embeddings, blocks, output)

    writer.add_tensor("token_embd.weight", embeddings)
    for layer, weights in enumerate(blocks):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(_EMBED, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", weights[name])
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(_EMBED, dtype=np.float32))
        for name in ("ffn_gate", "ffn_up", "ffn_down"):
            writer.add_tensor(f"{block}.{name}.weight", weights[name])
    writer.add_tensor("output_norm.weight", np.ones(_EMBED, dtype=np.float32))
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write velesio's tiny test model (a GGUF file).")
    parser.add_argument("path", type=Path, help="where to write the .gguf file")
    args = parser.parse_args(argv)
    print(write_tiny_model(args.path))


if __name__ == "__main__":
    main()
