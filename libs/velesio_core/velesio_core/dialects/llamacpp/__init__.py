"""llama.cpp's native server API, as LLM for Unity (v2 and v3) and llama.cpp clients use it."""
