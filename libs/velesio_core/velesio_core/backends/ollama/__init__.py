"""The Ollama backend (RUN_OLLAMA=true)."""
