"""Ollama's REST API (/api/*, GET /), as the official clients and Unity's Ollama packages use it."""
