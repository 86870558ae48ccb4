"""Ollama's sampling options beside llama.cpp's: one list, read both ways (the Ollama dialect
decodes Ollama's options into a job; the Ollama backend encodes a job's into Ollama's)."""

#: Ollama's option names that are llama.cpp's names too, for the same thing.
SAME_AS_LLAMACPP = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_last_n",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "stop",
)
