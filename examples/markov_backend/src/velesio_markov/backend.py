"""A velesio backend that really computes: a character-level Markov chain.

It declares completions, chat, embeddings and tokenize; velesio routes those jobs to it from
every dialect, answers every other kind (images) with a 501, streams each character as it comes,
stops at ``max_tokens`` and the stop words, and cancels it when its client leaves.
"""

from __future__ import annotations

import math
import os
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from velesio_core.backend_plugins import Capability, GenerationRequest, JobContext, ModelInfo

MODEL_ID = "markov-tale"
#: The size of an embedding: hashed character trigram counts, normalised.
EMBEDDING_SIZE = 64
#: Token id of a character the tale never uses.
UNKNOWN = 0


class MarkovBackend:
    """Chooses each next character from those that followed the last ``order`` characters in the tale."""

    capabilities = frozenset({Capability.COMPLETION, Capability.CHAT, Capability.EMBEDDINGS, Capability.TOKENIZE})

    def __init__(self) -> None:
        self.order = int(os.environ.get("MARKOV_ORDER", "4"))
        source = os.environ.get("MARKOV_TEXT")
        text = Path(source).read_text() if source else resources.files(__package__).joinpath("tale.txt").read_text()
        self.text = " ".join(text.split())
        self.transitions: dict[str, Counter[str]] = defaultdict(Counter)
        for index in range(len(self.text) - self.order):
            self.transitions[self.text[index : index + self.order]][self.text[index + self.order]] += 1
        self.alphabet = sorted(set(self.text))
        self.ids = {char: index + 1 for index, char in enumerate(self.alphabet)}
        # Generations run on several worker threads at once; the tables are only read, but a
        # closed backend must not be used.
        self._closed = threading.Event()

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=MODEL_ID,
                n_ctx=len(self.text),
                slots=4,
                details={"format": "markov", "architecture": f"char-markov-{self.order}", "parameters": self.size},
            )
        ]

    @property
    def size(self) -> int:
        return sum(len(followers) for followers in self.transitions.values())

    def generate(self, request: GenerationRequest, context: JobContext) -> Iterator[str]:
        rng = random.Random(request.seed)
        temperature = 1.0 if request.temperature is None else request.temperature
        state = self._start(" ".join(request.prompt.split()), rng)
        while not self._closed.is_set():
            followers = self.transitions.get(state)
            if not followers:  # the tale's last characters: start again from a random place
                state = self._random_state(rng)
                continue
            char = self._choose(followers, temperature, rng)
            state = state[1:] + char
            yield char

    def _start(self, prompt: str, rng: random.Random) -> str:
        tail = prompt[-self.order :]
        if len(tail) == self.order and tail in self.transitions:
            return tail
        return self._random_state(rng)

    def _random_state(self, rng: random.Random) -> str:
        start = rng.randrange(len(self.text) - self.order)
        return self.text[start : start + self.order]

    @staticmethod
    def _choose(followers: Counter[str], temperature: float, rng: random.Random) -> str:
        if temperature <= 0:
            return max(sorted(followers), key=lambda char: followers[char])
        chars = sorted(followers)
        weights = [followers[char] ** (1 / temperature) for char in chars]
        return rng.choices(chars, weights)[0]

    def tokenize(self, text: str, *, model: str) -> list[int]:
        return [self.ids.get(char, UNKNOWN) for char in text]

    def detokenize(self, tokens: list[int], *, model: str) -> str:
        return "".join(self.alphabet[token - 1] if 0 < token <= len(self.alphabet) else "\ufffd" for token in tokens)

    def embed(self, texts: list[str], *, model: str, context: JobContext) -> list[list[float]]:
        vectors = []
        for text in texts:
            context.check()
            vector = [0.0] * EMBEDDING_SIZE
            padded = f"  {text.lower()}  "
            for index in range(len(padded) - 2):
                # A stable hash (Python's own is salted per process).
                trigram = padded[index : index + 3].encode()
                vector[int.from_bytes(trigram, "little") % EMBEDDING_SIZE] += 1.0
            norm = math.sqrt(sum(value * value for value in vector)) or 1.0
            vectors.append([value / norm for value in vector])
        return vectors

    def close(self) -> None:
        self._closed.set()
