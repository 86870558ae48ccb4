"""AUTOMATIC1111's generation parameters text: what it writes into every PNG (the ``parameters``
chunk) and into ``info.infotexts``. Tools that read A1111 images (and A1111's own PNG Info tab)
parse exactly this layout::

    <prompt>
    Negative prompt: <negative prompt>
    Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512, ...
"""

from __future__ import annotations

import json
from typing import Any

import velesio_core

VERSION = f"velesio {velesio_core.__version__}"


def infotext(prompt: str, negative_prompt: str, parameters: dict[str, Any]) -> str:
    """The text for one image; ``parameters`` in A1111's order, None values left out."""
    fields = ", ".join(f"{key}: {_value(value)}" for key, value in parameters.items() if value is not None)
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(fields)
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    # A1111 quotes (as JSON) values that would break the comma-separated list.
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text
