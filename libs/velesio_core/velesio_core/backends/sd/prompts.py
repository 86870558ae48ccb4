"""AUTOMATIC1111's extra-network syntax in prompts: ``<lora:name:weight>``.

A1111 strips each tag from the prompt and applies the named LoRA (a file in models/Lora/, called
by its stem) at the given weight, 1 when none is given. ``<lora:name:te:unet>`` gives the text
encoder and the UNet weights apart; diffusers applies one weight per adapter, so the UNet's is
used, as it dominates the result. ``<lyco:...>`` (LyCORIS, same syntax) is taken as a LoRA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import invalid_request

_TAG = re.compile(r"<(lora|lyco):([^:>]+)((?::[^:>]*)*)>", re.IGNORECASE)


@dataclass(frozen=True)
class LoraRequest:
    name: str
    weight: float


def extract_loras(prompt: str) -> tuple[str, list[LoraRequest]]:
    """The prompt without its LoRA tags, and the LoRAs it asked for (the last weight of a name wins)."""
    loras: dict[str, float] = {}

    def take(match: re.Match[str]) -> str:
        name = match.group(2).strip()
        numbers = [part for part in match.group(3).split(":")[1:] if part.strip()]
        weight_text = numbers[1] if len(numbers) > 1 else (numbers[0] if numbers else "1")
        try:
            weight = float(weight_text)
        except ValueError:
            raise invalid_request(f"prompt: the weight of <lora:{name}:...> is not a number: {weight_text!r}") from None
        loras[name] = weight
        return ""

    cleaned = _TAG.sub(take, prompt)
    return " ".join(cleaned.split()) if loras else prompt, [LoraRequest(n, w) for n, w in loras.items()]
