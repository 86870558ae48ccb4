"""OpenAI's Responses API (/v1/responses), as Codex CLI, the Agents SDK and the openai SDKs use it."""
