"""Anthropic's Messages API (/v1/messages), as the anthropic SDKs and Claude Code use it."""
