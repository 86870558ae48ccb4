"""Tool choice, as every dialect's requests put it, in the words llama-server understands.

llama-server takes ``tool_choice`` "auto", "none" or "required" only. A named function is the
same as "required" with that one function offered, which is how it is sent.
"""

from __future__ import annotations

from typing import Any

from ..errors import invalid_request


def choose_tool(mode: str, name: str | None, tools: list[dict[str, Any]] | None, *, where: str) -> dict[str, Any]:
    """The payload fields for ``mode`` ("auto", "none", "required" or "named" with ``name``)."""
    if mode != "named":
        return {"tool_choice": mode}
    chosen = [tool for tool in tools or () if tool["function"]["name"] == name]
    if not chosen:
        raise invalid_request(f"{where}: no tool named {name!r} was given")
    return {"tool_choice": "required", "tools": chosen}
