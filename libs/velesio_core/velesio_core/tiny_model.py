"""A tiny llama-architecture GGUF model, written from scratch with the ``gguf`` package.

velesio uses it as the embedded default (``make up`` with no model configured) and in tests:
it loads in a real ``llama-server`` in milliseconds and generates thousands of tokens per
second on a CPU, so the gateway's own overhead dominates every measurement made with it.

The weights are random (seeded, so every build of the file is byte-identical) and the text it
writes is nonsense, but everything around the weights is real: a byte-fallback SentencePiece
vocabulary that can encode any UTF-8 text, ChatML control tokens and a ChatML chat template.
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import numpy as np

# The exact ChatML template LLM for Unity recognises (LLMChatTemplates.cs, ChatMLTemplate), so
# that /template maps this model to "chatml" by an exact match, as it would a real ChatML model.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MODEL_NAME = "velesio-tiny"

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
    return tokens, scores, [int(t) for t in types]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def write_tiny_model(path: str | Path, *, chat_template: str = CHATML_TEMPLATE, seed: int = 1234) -> Path:
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
    writer.add_chat_template(chat_template)

    # Whole words get larger output rows than every other piece, so sampling mostly picks
    # readable words and rarely stops on an end-of-generation token by chance.
    output = _normal(rng, (len(tokens), _EMBED), 0.05)
    whole_words = {"\u2581" + word for word in _WORDS}
    output[np.array([token in whole_words for token in tokens])] *= 40.0

    writer.add_tensor("token_embd.weight", _normal(rng, (len(tokens), _EMBED), 0.5))
    for layer in range(_LAYERS):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(_EMBED, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", _normal(rng, (_EMBED, _EMBED), 0.1))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(_EMBED, dtype=np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", _normal(rng, (_FFN, _EMBED), 0.1))
        writer.add_tensor(f"{block}.ffn_up.weight", _normal(rng, (_FFN, _EMBED), 0.1))
        writer.add_tensor(f"{block}.ffn_down.weight", _normal(rng, (_EMBED, _FFN), 0.1))
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
