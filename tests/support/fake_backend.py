"""In-process stand-ins for llama-server and the diffusers pipeline, for the fast tests (tests/fast).

The fast tests run velesio's real API (``create_app``), its real in-process queue
(``LocalJobQueue``, ``JobSupervisor``, ``JobDispatcher``) and every real dialect; only the model behind
them is this fake, so that they need no llama-server build, no model file and no Redis. The
end-to-end tests (tests/e2e) run the real backends and stay the proof that those behave.

The fakes speak the real contracts: :class:`FakeLlm` implements ``LlmBackend``
(velesio_core/backends/base.py) and answers in llama-server's own vocabulary (partial and final
``/completion`` chunks, ``stop_type``, ``timings``, OpenAI-shaped chat deltas with reasoning and
tool calls, llama.cpp's errors); :class:`FakeImages` runs image jobs the way ``SdBackend`` does
(progress at every step, interrupt and skip, A1111's result vocabulary, real PNGs).

Its "model" is deterministic so that tests can compute what a client must receive: it tokenizes
text as UTF-8 bytes (one token per byte, as a byte-level vocabulary would), renders chats with
ChatML, and always tells the same story, one word per token.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

from velesio_core.backends.base import ModelInfo
from velesio_core.cancellation import Cancellation, JobCancelled, Reason
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.events import Event, EventType
from velesio_core.jobs import Job, JobKind

MODEL = "fake"
N_CTX = 512
SLOTS = 2
EMBEDDING_SIZE = 16
#: LLM for Unity's exact ChatML template (dialects/llamacpp/templates.py recognises it as "chatml").
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
#: What the model says, one token per piece; with ignore_eos it starts again.
STORY = (
    "Once",
    " upon",
    " a",
    " time",
    ",",
    " a",
    " knight",
    " rode",
    " to",
    " the",
    " castle",
    " and",
    " the",
    " dragon",
    " slept",
    ".",
)
#: What a thinking model thinks first (chat only), one token per piece.
THOUGHT = ("The", " user", " wants", " a", " story", ".")
#: The arguments of the tool call the model makes when it is given tools, in the fragments it streams.
TOOL_ARGUMENTS = ('{"city', '": "Par', 'is"}')
#: The vocabulary: the 256 bytes, then each word of the story as one token.
WORDS = tuple(sorted(set(STORY) | set(THOUGHT)))
VOCAB = 256 + len(WORDS)


def tokenize(text: str) -> list[int]:
    """Text as the model reads it: one token per UTF-8 byte (it never merges bytes into words)."""
    return list(text.encode())


def token_of(word: str) -> int:
    return 256 + WORDS.index(word)


def detokenize(tokens: list[int]) -> str:
    pieces = [bytes([token]) if token < 256 else WORDS[token - 256].encode() for token in tokens if token < VOCAB]
    return b"".join(pieces).decode(errors="replace")


def render_chat(messages: list[dict[str, Any]], *, generation_prompt: bool = True) -> str:
    """What the model's ChatML template makes of a chat (llama-server's /apply-template)."""
    rendered = "".join(f"<|im_start|>{m['role']}\n{_text(m.get('content'))}<|im_end|>\n" for m in messages)
    return rendered + ("<|im_start|>assistant\n" if generation_prompt else "")


def story(n_predict: int | None, *, ignore_eos: bool = False) -> list[str]:
    """The pieces a generation of ``n_predict`` tokens produces (None or -1: until the end)."""
    if n_predict is None or n_predict < 0:
        return list(STORY)
    if ignore_eos:
        return [STORY[index % len(STORY)] for index in range(n_predict)]
    return list(STORY[:n_predict])


#: The log-probability of each word the model says; the other words of its vocabulary come after.
CHOSEN_LOGPROB = -0.25


def logprob_entry(word: str, top: int) -> dict[str, Any]:
    """llama-server's logprobs entry of an OpenAI chat answer for ``word``, with ``top`` candidates
    (the word itself first, then other words, each less likely)."""

    def candidate(candidate_word: str, logprob: float) -> dict[str, Any]:
        return {
            "id": token_of(candidate_word),
            "token": candidate_word,
            "bytes": list(candidate_word.encode()),
            "logprob": logprob,
        }

    others = [other for other in WORDS if other != word]
    top_logprobs = [candidate(word, CHOSEN_LOGPROB)] + [
        candidate(other, CHOSEN_LOGPROB - rank) for rank, other in enumerate(others, start=1)
    ]
    return {**candidate(word, CHOSEN_LOGPROB), "top_logprobs": top_logprobs[:top]}


def embedding(text: str) -> list[float]:
    """A unit vector that depends only on the text."""
    digest = hashlib.sha256(text.encode()).digest()
    values = [byte - 127.5 for byte in digest[:EMBEDDING_SIZE]]
    norm = math.sqrt(sum(value * value for value in values))
    return [value / norm for value in values]


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI's content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


class Hold:
    """Stops generations before their first token until released, so a test can look at the
    server while jobs run (slots, queue, cancellation). A cancelled job leaves at once."""

    def __init__(self) -> None:
        self.arrived = 0
        self._released = threading.Event()
        self._lock = threading.Lock()

    def wait(self, cancellation: Cancellation) -> None:
        with self._lock:
            self.arrived += 1
        while not self._released.wait(0.005):
            cancellation.check()

    def release(self) -> None:
        self._released.set()


class FakeLlm:
    """An ``LlmBackend`` whose model is a ChatML storyteller with a byte-level vocabulary.

    Knobs a test may set: ``thinking`` (chats start with reasoning_content, unless the request
    sets ``chat_template_kwargs.enable_thinking`` false), ``hold`` (a :class:`Hold`),
    ``stall_after`` (a generation stops making progress after that many tokens, until cancelled),
    ``embeddings_on`` (False: embeddings are refused as llama-server without --embeddings does),
    ``also_serves`` (more model names in its directory, as several workers or an Ollama worker give),
    ``events_per_read`` (how many events it hands on together, as llama-server's backend hands on
    the tokens it had already received).
    """

    def __init__(self) -> None:
        self.thinking = False
        self.hold: Hold | None = None
        self.stall_after: int | None = None
        self.embeddings_on = True
        self.also_serves: tuple[str, ...] = ()
        self.events_per_read = 1
        #: Every request as the backend received it: (kind, payload). What travels to a backend
        #: is velesio's job vocabulary (jobs.py), so tests may check a dialect's translation here.
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.cancelled: list[Reason] = []
        self._generating = 0
        self._lock = threading.Lock()

    # -- the LlmBackend protocol ---------------------------------------------------------------

    def complete(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        self.received.append(("completion", request))
        prompt = request["prompt"]
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(tokenize(prompt))
        self._check_context(prompt_tokens)
        pieces = story(request.get("n_predict"), ignore_eos=bool(request.get("ignore_eos")))
        return self._grouped(self._completion_events(request, pieces, prompt_tokens, stream, cancellation))

    def chat(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        self.received.append(("chat", request))
        prompt_tokens = len(tokenize(render_chat(request["messages"])))
        self._check_context(prompt_tokens)
        return self._grouped(self._chat_events(request, prompt_tokens, stream, cancellation))

    def tokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        self.received.append(("tokenize", request))
        tokens = tokenize(request["content"])
        if request.get("with_pieces"):
            return {"tokens": [{"id": token, "piece": bytes([token]).decode("latin-1")} for token in tokens]}
        return {"tokens": tokens}

    def detokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        self.received.append(("detokenize", request))
        if any(token >= VOCAB for token in request["tokens"]):
            raise GatewayError(ErrorKind.INVALID_REQUEST, "Invalid tokens")
        return {"content": detokenize(request["tokens"])}

    def apply_template(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        self.received.append(("apply_template", request))
        return {"prompt": render_chat(request["messages"])}

    def embeddings(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        self.received.append(("embeddings", request))
        if not self.embeddings_on:
            raise GatewayError(ErrorKind.NOT_SUPPORTED, "embeddings are turned off on this worker")
        given = request.get("input", request.get("content"))
        # llama.cpp's inputs: a text, token ids (one prompt), or a list of texts and token lists.
        if isinstance(given, str) or all(isinstance(item, int) for item in given):
            given = [given]
        texts = [item if isinstance(item, str) else detokenize(item) for item in given]
        return {"embeddings": [embedding(text) for text in texts], "prompt_tokens": sum(map(len, map(tokenize, texts)))}

    def slots(self, *, model: str, cancellation: Cancellation) -> Any:
        busy = self._generating
        return [
            {
                "id": index,
                "id_task": -1,
                "n_ctx": N_CTX,
                "speculative": False,
                "is_processing": index < busy,
                "params": {"n_predict": -1, "seed": 4294967295, "temperature": 0.8},
                "next_token": {"has_next_token": index < busy, "has_new_line": False, "n_remain": -1, "n_decoded": 0},
            }
            for index in range(SLOTS)
        ]

    def models(self) -> list[ModelInfo]:
        props = {
            "default_generation_settings": {
                "id": 0,
                "id_task": -1,
                "n_ctx": N_CTX,
                "is_processing": False,
                "params": {"n_predict": -1, "seed": 4294967295, "temperature": 0.8},
            },
            "total_slots": SLOTS,
            "model_path": f"/models/text/{MODEL}.gguf",
            "chat_template": CHATML,
            "modalities": {"vision": False, "audio": False},
            "build_info": "b0000-fake",
        }
        details = {
            "format": "gguf",
            "architecture": "llama",
            "quantization": "F32",
            "size": 1_234_567,
            "parameters": 2_500_000,
            "context_length": 2048,
            "embedding_length": 64,
        }
        return [
            ModelInfo(
                id=name,
                n_ctx=N_CTX,
                slots=SLOTS,
                chat_template=CHATML,
                general_name="velesio-fake",
                path=f"/models/text/{MODEL}.gguf",
                embeddings=self.embeddings_on,
                props=props,
                details=details,
            )
            for name in (MODEL, *self.also_serves)
        ]

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        pass

    # -- generation ----------------------------------------------------------------------------

    def _check_context(self, prompt_tokens: int) -> None:
        if prompt_tokens > N_CTX:
            # llama-server's own refusal, with its extra fields.
            raise GatewayError(
                ErrorKind.EXCEED_CONTEXT_SIZE,
                f"request ({prompt_tokens} tokens) exceeds the available context size ({N_CTX} tokens),"
                " try increasing it",
                extra={"n_prompt_tokens": prompt_tokens, "n_ctx": N_CTX},
            )

    def _generating_steps(
        self, pieces: list[Any], cancellation: Cancellation, clock: _Clock
    ) -> Iterator[tuple[int, Any]]:
        """The pieces, as the job may go on: held, stalled or cancelled as the test asked."""
        with self._lock:
            self._generating += 1
        try:
            if self.hold is not None:
                self.hold.wait(cancellation)
            clock.prompt_done()
            for index, piece in enumerate(pieces):
                if self.stall_after is not None and index >= self.stall_after:
                    while not cancellation.cancelled:
                        time.sleep(0.005)
                self._check(cancellation)
                yield index, piece
            self._check(cancellation)
        finally:
            with self._lock:
                self._generating -= 1

    def _grouped(self, events: Iterator[Event]) -> Iterator[list[Event]]:
        group: list[Event] = []
        for event in events:
            group.append(event)
            if len(group) >= self.events_per_read or event.type.is_final:
                yield group
                group = []
        if group:
            yield group

    def _check(self, cancellation: Cancellation) -> None:
        if cancellation.reason is not None:
            self.cancelled.append(cancellation.reason)
            raise JobCancelled(cancellation.reason)

    def _completion_events(
        self, request: dict[str, Any], pieces: list[str], prompt_tokens: int, stream: bool, cancellation: Cancellation
    ) -> Iterator[Event]:
        clock = _Clock()
        stop_type, stopping_word, content = "eos", "", ""
        n_predict = request.get("n_predict")
        if n_predict is not None and n_predict >= 0 and len(pieces) == n_predict:
            stop_type = "limit"
        stops = request.get("stop") or []
        predicted = 0
        generated_tokens: list[int] = []
        probabilities: list[dict[str, Any]] = []
        for index, generated in self._generating_steps(pieces, cancellation, clock):
            text = content + generated
            stop = next((stop for stop in stops if stop in text), None)
            # Like llama-server, the text from a stop string on is never sent.
            piece = text[: text.index(stop)][len(content) :] if stop is not None else generated
            content += piece
            predicted = index + 1
            if request.get("return_tokens"):
                generated_tokens.append(token_of(generated))
            chosen = _probabilities(generated, request.get("n_probs") or 0)
            probabilities += chosen
            if stream and piece:
                yield Event.of(
                    EventType.TOKEN,
                    {
                        "index": 0,
                        "content": piece,
                        "tokens": [token_of(generated)],
                        "stop": False,
                        "id_slot": 0,
                        "tokens_predicted": predicted,
                        "tokens_evaluated": prompt_tokens,
                        **({"completion_probabilities": chosen} if chosen else {}),
                    },
                )
            if stop is not None:
                stop_type, stopping_word = "word", stop
                break
        settings = {key: request[key] for key in ("temperature", "top_k", "top_p", "seed") if key in request}
        yield Event.of(
            EventType.RESULT,
            {
                "index": 0,
                "content": "" if stream else content,
                # llama-server keeps the sampled ids only under return_tokens, and sends them
                # whole only when it did not stream them piece by piece.
                "tokens": [] if stream else generated_tokens,
                "id_slot": 0,
                "stop": True,
                "model": MODEL,
                "tokens_predicted": predicted,
                "tokens_evaluated": prompt_tokens,
                "generation_settings": {
                    "n_predict": n_predict if n_predict is not None else -1,
                    "seed": request.get("seed", 4294967295),
                    "stream": stream,
                    **settings,
                },
                "prompt": request["prompt"] if isinstance(request["prompt"], str) else "",
                "has_new_line": False,
                "truncated": False,
                "stop_type": stop_type,
                "stopping_word": stopping_word,
                "tokens_cached": prompt_tokens + predicted,
                "timings": clock.timings(prompt_tokens, predicted),
                # Streamed, each token's probabilities went with it.
                **({"completion_probabilities": probabilities} if probabilities and not stream else {}),
            },
        )

    def _chat_events(
        self, request: dict[str, Any], prompt_tokens: int, stream: bool, cancellation: Cancellation
    ) -> Iterator[Event]:
        clock = _Clock()
        thinking = self.thinking and (request.get("chat_template_kwargs") or {}).get("enable_thinking") is not False
        calls_tool = bool(request.get("tools")) and request.get("tool_choice") != "none"
        steps: list[dict[str, Any]] = [{"reasoning_content": piece} for piece in THOUGHT] if thinking else []
        if calls_tool:
            name = request["tools"][0]["function"]["name"]
            steps.append(
                {
                    "tool_calls": [
                        {"index": 0, "id": "call_0", "type": "function", "function": {"name": name, "arguments": ""}}
                    ]
                }
            )
            steps += [{"tool_calls": [{"index": 0, "function": {"arguments": part}}]} for part in TOOL_ARGUMENTS]
        else:
            steps += [{"content": piece} for piece in story(None, ignore_eos=False)]
        limit = request.get("max_tokens")
        if request.get("ignore_eos") and limit is not None and not calls_tool:
            steps += [{"content": piece} for piece in story(limit, ignore_eos=True)][len(STORY) :]
        stop_type = "tool_calls" if calls_tool else "eos"
        if limit is not None and len(steps) >= limit:
            steps, stop_type = steps[:limit], "limit"
        if request.get("logprobs"):
            # llama-server's logprobs: one entry per content token (in each chunk, when streamed).
            for step in steps:
                if "content" in step:
                    step["logprobs"] = {"content": [logprob_entry(step["content"], request.get("top_logprobs") or 0)]}
        for _, piece in self._generating_steps(steps, cancellation, clock):
            if stream:
                yield Event.of(EventType.TOKEN, piece)
        content = "".join(step.get("content", "") for step in steps)
        reasoning = "".join(step.get("reasoning_content", "") for step in steps)
        predicted = len(steps)
        result: dict[str, Any] = {
            "content": "" if stream else content,
            "stop": True,
            "stop_type": stop_type,
            "tokens_predicted": predicted,
            "tokens_evaluated": prompt_tokens,
            "timings": clock.timings(prompt_tokens, predicted),
        }
        if not stream and reasoning:
            result["reasoning_content"] = reasoning
        if not stream and request.get("logprobs"):
            result["logprobs"] = {
                "content": [entry for step in steps for entry in step.get("logprobs", {}).get("content", [])]
            }
        if not stream and calls_tool:
            arguments = "".join(TOOL_ARGUMENTS)
            result["tool_calls"] = [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": request["tools"][0]["function"]["name"], "arguments": arguments},
                }
            ]
        yield Event.of(EventType.RESULT, result)


def _probabilities(word: str, n_probs: int) -> list[dict[str, Any]]:
    """llama-server's /completion probabilities of one sampled token under ``n_probs``: the story's
    word is always the likeliest, the next words of the vocabulary less and less likely."""
    if n_probs <= 0:
        return []

    def entry(other: str, rank: int) -> dict[str, Any]:
        return {"id": token_of(other), "token": other, "bytes": list(other.encode()), "logprob": -0.25 * (rank + 1)}

    others = [other for other in WORDS if other != word]
    top = [entry(word, 0), *(entry(other, rank + 1) for rank, other in enumerate(others[: n_probs - 1]))]
    return [{**entry(word, 0), "top_logprobs": top}]


class _Clock:
    """llama-server's timings, measured: the prompt's from the call to the first token, the
    generation's from there to the end (so that no duration claims more than the wall clock)."""

    def __init__(self) -> None:
        self._started = self._prompt_done = time.perf_counter()

    def prompt_done(self) -> None:
        self._prompt_done = time.perf_counter()

    def timings(self, prompt_n: int, predicted_n: int) -> dict[str, Any]:
        now = time.perf_counter()
        prompt_ms = (self._prompt_done - self._started) * 1000
        predicted_ms = (now - self._prompt_done) * 1000
        return {
            "cache_n": 0,
            "prompt_n": prompt_n,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / max(1, prompt_n),
            "prompt_per_second": 1000 * prompt_n / prompt_ms if prompt_ms else 0.0,
            "predicted_n": predicted_n,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / max(1, predicted_n),
            "predicted_per_second": 1000 * predicted_n / predicted_ms if predicted_ms else 0.0,
        }


# -- images -----------------------------------------------------------------------------------

CHECKPOINTS = [
    {
        "title": "tiny-ldm.safetensors [5a0c1d2e3f]",
        "model_name": "tiny-ldm",
        "hash": "5a0c1d2e3f",
        "sha256": "5a0c1d2e3f" + "0" * 54,
        "filename": "/models/image/models/Stable-diffusion/tiny-ldm.safetensors",
        "config": None,
    },
    {
        "title": "velesio-tiny-sd",
        "model_name": "velesio-tiny-sd",
        "hash": None,
        "sha256": None,
        "filename": "/models/image/models/Stable-diffusion/velesio-tiny-sd",
        "config": None,
    },
]
LORAS = ["texture-style"]
VAES = ["sharp.vae.safetensors"]
IMAGE_VERSION = "velesio fake"


class FakeImages:
    """Runs image jobs the way ``SdBackend.run`` does, without diffusers: one ``progress`` event
    per denoising step, A1111's interrupt (answer with what is done) and skip (give up the current
    batch), and A1111's result vocabulary with real PNGs of the asked size.

    ``hold_at_step``: every job waits after emitting that step until ``release_step`` is set (or
    the job is cancelled or interrupted), so a test can watch a job in the middle of its work."""

    def __init__(self) -> None:
        self.checkpoint = CHECKPOINTS[0]["title"]
        self.vae = "Automatic"
        self.hold_at_step: int | None = None
        self.at_step = threading.Event()
        self.release_step = threading.Event()
        self.received: list[tuple[str, dict[str, Any]]] = []

    def status(self) -> dict[str, Any]:
        """What an image worker's registry card says of its pipeline (backends/sd/backend.py SdStatus)."""
        return {
            "checkpoints": CHECKPOINTS,
            "loras": LORAS,
            "vaes": VAES,
            "sd_model_checkpoint": self.checkpoint,
            "sd_vae": self.vae,
            "device": "cpu",
        }

    def run(self, job: Job, emit: Any, cancellation: Cancellation) -> dict[str, Any]:
        cancellation.check()
        payload = job.payload
        self.received.append((job.kind.value, payload))
        if job.kind is JobKind.SD_OPTIONS:
            self._apply(payload.get("sd_model_checkpoint"), payload.get("sd_vae"))
            return {"sd_model_checkpoint": self.checkpoint, "sd_vae": self.vae}
        base = (self.checkpoint, self.vae)
        try:
            self._apply(payload.get("sd_model_checkpoint"), payload.get("sd_vae"))
            return self._generate(job, emit, cancellation)
        finally:
            self.checkpoint, self.vae = base  # an override lasts one request

    def _apply(self, checkpoint: str | None, vae: str | None) -> None:
        if checkpoint:
            found = next((c for c in CHECKPOINTS if checkpoint in (c["title"], c["model_name"])), None)
            if found is None:
                known = ", ".join(c["title"] for c in CHECKPOINTS)
                raise GatewayError(
                    ErrorKind.NOT_FOUND, f"no checkpoint is called {checkpoint!r}; this worker has: {known}"
                )
            self.checkpoint = found["title"]
        if vae is not None:
            if vae not in ("Automatic", "None", "", *VAES):
                raise GatewayError(ErrorKind.NOT_FOUND, f"sd_vae: no VAE is called {vae!r}; this worker has: {VAES[0]}")
            self.vae = vae or "Automatic"

    def _generate(self, job: Job, emit: Any, cancellation: Cancellation) -> dict[str, Any]:
        payload = job.payload
        started_at = time.time()
        seed = payload["seed"] if payload["seed"] != -1 else random.randrange(2**32)
        per_batch, batches = payload["batch_size"], payload["n_iter"]
        seeds: list[int] = []
        interrupted = skipped = False
        steps_run = 0
        for job_no in range(batches):
            # A skipped or interrupted batch still answers its images, decoded from where it got to.
            outcome, steps = self._denoise(payload["steps"], job_no, batches, started_at, emit, cancellation)
            steps_run += steps
            seeds += [seed + job_no * per_batch + index for index in range(per_batch)]
            skipped |= outcome == "skipped"
            if outcome == "interrupted":
                interrupted = True
                break
        loaded = next(c for c in CHECKPOINTS if c["title"] == self.checkpoint)
        vae = None if self.vae in ("Automatic", "None", "") else self.vae
        denoising = payload.get("denoising_strength") if job.kind is JobKind.IMG2IMG else None
        texts = [self._infotext(payload, loaded, vae, denoising, used) for used in seeds]
        images = [
            _png(payload["width"], payload["height"], used, text) for used, text in zip(seeds, texts, strict=True)
        ]
        return {
            "images": images,
            "seeds": seeds,
            "infotexts": texts,
            "sampler_name": payload["sampler_name"],
            "scheduler": payload["scheduler"],
            "denoising_strength": denoising,
            "sd_model_name": loaded["model_name"],
            "sd_model_hash": loaded["hash"],
            "sd_vae_name": vae,
            "clip_skip": payload.get("clip_skip", 1),
            "is_using_inpainting_conditioning": False,
            "interrupted": interrupted,
            "skipped": skipped,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started_at)),
            "version": IMAGE_VERSION,
            "timings": {"steps": steps_run, "diffusion_ms": 1.0 * steps_run},
        }

    def _denoise(
        self, steps: int, job_no: int, batches: int, started_at: float, emit: Any, cancellation: Cancellation
    ) -> tuple[str | None, int]:
        """One batch's steps: (None, or how it ended early: "interrupted" or "skipped"; steps run)."""

        def stopped() -> str | None:
            if cancellation.reason is Reason.INTERRUPTED:
                return "interrupted"
            cancellation.check()
            return "skipped" if cancellation.take_skip() else None

        for step in range(1, steps + 1):
            if outcome := stopped():
                return outcome, step - 1
            progress = {"step": step, "steps": steps, "job_no": job_no, "job_count": batches, "started_at": started_at}
            emit(Event.of(EventType.PROGRESS, progress))
            if self.hold_at_step == step:
                self.at_step.set()
                while not self.release_step.wait(0.005):
                    if outcome := stopped():
                        return outcome, step
        return None, steps

    @staticmethod
    def _infotext(payload: dict[str, Any], loaded: dict[str, Any], vae: str | None, denoising: Any, seed: int) -> str:
        fields = {
            "Steps": payload["steps"],
            "Sampler": payload["sampler_name"],
            "Schedule type": payload["scheduler"],
            "CFG scale": payload["cfg_scale"],
            "Seed": seed,
            "Size": f"{payload['width']}x{payload['height']}",
            "Model hash": loaded["hash"],
            "Model": loaded["model_name"],
            "VAE": vae,
            "Denoising strength": denoising,
            "Version": IMAGE_VERSION,
        }
        lines = [payload["prompt"]]
        if payload.get("negative_prompt"):
            lines.append(f"Negative prompt: {payload['negative_prompt']}")
        lines.append(", ".join(f"{key}: {value}" for key, value in fields.items() if value is not None))
        return "\n".join(lines)


def _png(width: int, height: int, seed: int, text: str) -> str:
    """A real PNG of the asked size, its colour set by the seed, with A1111's ``parameters`` text."""
    from PIL import Image, PngImagePlugin

    colour = tuple(random.Random(seed).randrange(256) for _ in range(3))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


class FakeModels:
    """The model directory of a worker serving ``llm`` and ``images`` alone (what a standalone
    worker's directory answers, see velesio_worker/standalone.py)."""

    def __init__(self, llm: FakeLlm | None, images: FakeImages | None) -> None:
        self._llm = llm
        self._images = images

    async def models(self, *, fresh: bool = False) -> list[ModelInfo]:
        return self._llm.models() if self._llm is not None else []

    async def images(self) -> list[dict[str, Any]]:
        return [self._images.status()] if self._images is not None else []
