"""Backend adapters: the programs that actually run models (llama-server, Ollama, diffusers)."""
