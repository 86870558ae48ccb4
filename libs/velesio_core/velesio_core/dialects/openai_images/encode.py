"""OpenAI's image answers, from velesio's image results (AUTOMATIC1111's vocabulary)."""

from __future__ import annotations

from typing import Any


def images(result: dict[str, Any], *, created: int, width: int, height: int) -> dict[str, Any]:
    return {
        "created": created,
        "data": [{"b64_json": image} for image in result.get("images") or ()],
        "output_format": "png",
        "size": f"{width}x{height}",
    }
