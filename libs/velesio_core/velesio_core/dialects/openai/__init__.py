"""OpenAI's API (/v1/*), as the official SDKs, LangChain and the many OpenAI-compatible clients use it."""
