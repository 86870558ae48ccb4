"""The result vocabulary: what a job sends back, and what a worker's card says it can do.

Every backend produces these and every dialect consumes them (events.py says which event carries
which). They travel as JSON (a Redis stream entry, a field of the registry's hash), so they are
TypedDicts: the type checker holds producers and consumers to one shape, and at run time they are
the plain dicts that orjson reads and writes, at no cost.

A dict that comes from llama-server may hold more keys than are listed here (its final chunk has
dozens, which the llama.cpp dialect forwards untouched); the keys listed are those velesio writes
or reads. Keys a producer may leave out are ``NotRequired``, and consumers ``.get()`` them.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "CheckpointEntry",
    "EmbeddingsResult",
    "FunctionCall",
    "FunctionCallDelta",
    "GenerationResult",
    "ImageProgressData",
    "ImageResult",
    "ImageState",
    "ImageTimings",
    "JobResult",
    "Logprobs",
    "ModelDetails",
    "SdOptionsResult",
    "StartedData",
    "StopType",
    "Timings",
    "TokenPiece",
    "ToolCall",
    "ToolCallDelta",
]

# -- text generation (completion and chat) ---------------------------------------------------------

#: Why a generation stopped, in llama.cpp's words: the model's end of sequence, a stop word, the
#: token limit, or (chat) a call of one of the request's tools.
StopType = Literal["eos", "word", "limit", "tool_calls"]


class FunctionCall(TypedDict):
    name: str
    #: The arguments as the model wrote them: a JSON object, as a string (OpenAI's shape).
    arguments: str


class ToolCall(TypedDict):
    """A whole tool call of a result, in OpenAI's shape."""

    id: str
    type: Literal["function"]
    function: FunctionCall
    #: Its place among the calls, when the backend numbered them (the Ollama backend does).
    index: NotRequired[int]


class FunctionCallDelta(TypedDict, total=False):
    name: str
    arguments: str


class ToolCallDelta(TypedDict, total=False):
    """A piece of a streamed tool call (OpenAI's shape): the id and the name come first, the
    arguments in fragments, all under the same ``index``."""

    index: int
    id: str
    type: str
    function: FunctionCallDelta


class Timings(TypedDict, total=False):
    """llama.cpp's ``timings``; llama-server adds speeds and cache counts, which pass through."""

    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float


class Logprobs(TypedDict):
    """A chat's per-token log probabilities, in OpenAI's shape, as llama-server writes them."""

    content: list[Any]


class GenerationResult(TypedDict):
    """The data of a completion's or a chat's ``result`` event: llama.cpp's final chunk."""

    #: The whole text, or "" when it went out as token events (the stream had it).
    content: str
    stop: NotRequired[bool]
    stop_type: StopType
    #: Tokens generated, and tokens of the prompt evaluated.
    tokens_predicted: int
    tokens_evaluated: int
    #: Empty when the backend reported none.
    timings: Timings
    #: Generated token ids: llama-server's completions fill them when asked (``return_tokens``).
    tokens: NotRequired[list[int]]
    #: llama-server's per-token probabilities (``n_probs``), passed through as it writes them.
    completion_probabilities: NotRequired[list[Any]]
    #: Chat only, when the model produced them and they were not streamed.
    reasoning_content: NotRequired[str]
    tool_calls: NotRequired[list[ToolCall]]
    #: Chat only, when the request asked for them (llama-server's ``logprobs``) and they were not
    #: streamed.
    logprobs: NotRequired[Logprobs]


class TokenPiece(TypedDict, total=False):
    """The data of a ``token`` event: a piece of the generation, llama.cpp's partial chunk.

    A completion's piece has ``content`` (and ``tokens``, ``stop``: false); a chat's piece has
    any of ``content``, ``reasoning_content`` and ``tool_calls``, only those that are not empty.
    """

    content: str
    reasoning_content: str
    tool_calls: list[ToolCallDelta]
    #: A chat's piece, when the request asked for log probabilities: those of its tokens.
    logprobs: Logprobs
    tokens: list[int]
    stop: bool


# -- other text jobs -------------------------------------------------------------------------------


class EmbeddingsResult(TypedDict):
    """The data of an embeddings job's ``result``: one pooled vector per input, in order."""

    embeddings: list[list[float]]
    prompt_tokens: int


# -- events around a job ---------------------------------------------------------------------------


class StartedData(TypedDict):
    """The data of a ``started`` event."""

    worker: str
    #: Unix time.
    started_at: float


class ImageProgressData(TypedDict):
    """The data of an image job's ``progress`` event, one per denoising step."""

    #: 1-based step within the current batch, of ``steps``.
    step: int
    steps: int
    #: 0-based batch, of ``job_count`` (A1111's ``n_iter``).
    job_no: int
    job_count: int
    #: Unix time the job started.
    started_at: float


# -- images ----------------------------------------------------------------------------------------


class ImageTimings(TypedDict):
    #: Denoising steps run, over every batch.
    steps: int
    diffusion_ms: float


class ImageResult(TypedDict):
    """The data of a txt2img or img2img ``result``, in AUTOMATIC1111's words (its ``info``)."""

    #: Base64 PNGs, without a ``data:`` prefix, each with its infotext inside.
    images: list[str]
    seeds: list[int]
    infotexts: list[str]
    sampler_name: str
    scheduler: str
    denoising_strength: float | None
    sd_model_name: str
    sd_model_hash: str | None
    sd_vae_name: str | None
    clip_skip: int
    #: The infotext's fields beyond the usual ones (hires. fix's), as A1111 lists them.
    extra_generation_params: dict[str, Any]
    is_using_inpainting_conditioning: bool
    #: A1111's interrupt and skip: the job answered with the images done so far.
    interrupted: bool
    skipped: bool
    #: Local time the job started, ``%Y%m%d%H%M%S``.
    job_timestamp: str
    version: str
    timings: ImageTimings


class SdOptionsResult(TypedDict):
    """The data of an ``sd_options`` job's ``result``: what the pipeline has loaded now."""

    sd_model_checkpoint: str | None
    sd_vae: str


class CheckpointEntry(TypedDict):
    """A checkpoint as AUTOMATIC1111's GET /sdapi/v1/sd-models lists it."""

    title: str
    model_name: str
    #: The first ten hex digits of ``sha256``; both None until the file is hashed.
    hash: str | None
    sha256: str | None
    filename: str
    config: None


class ImageState(TypedDict):
    """A worker's image pipeline, as its registry card shows it (``WorkerCard.images``)."""

    checkpoints: list[CheckpointEntry]
    loras: list[str]
    vaes: list[str]
    #: The loaded checkpoint's title; None while none is loaded.
    sd_model_checkpoint: str | None
    sd_vae: str
    device: str


# -- models ----------------------------------------------------------------------------------------


class ModelDetails(TypedDict, total=False):
    """What model lists show of a model (``ModelInfo.details``); a backend leaves out what it
    does not know."""

    format: str
    architecture: str
    #: Ollama's spelling: ``Q4_K_M``, ``F32``.
    quantization: str
    #: Bytes.
    size: int
    parameters: int
    context_length: int
    embedding_length: int


# -- what a result event carries -------------------------------------------------------------------

#: The data of a ``result`` event: the answer of its job's kind. Tokenize, detokenize,
#: apply_template and slots jobs answer with llama-server's own JSON, passed through unparsed
#: (typed ``Any`` by the backends), which fits here too.
JobResult = GenerationResult | EmbeddingsResult | ImageResult | SdOptionsResult
