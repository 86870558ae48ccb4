"""Differential testing: the same request to velesio and to a bare llama-server, answers compared.

An answer is its status, its media type and its body. Bodies are compared by shape (the same keys,
the same JSON types, lists as long) and by value, but for the values that differ between two runs
of the same server (ids, clocks, timings, cache counters): those are ``VOLATILE``. A stream is
compared as its first and last events and the text its events add up to.

What differs on purpose is listed in docs/compatibility.md, in the table of known differences, as
a route and a pattern (fnmatch) of the difference's description; :func:`documented_differences`
reads that table, so a difference is either fixed or documented there with its reason.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests

from .processes import ROOT

COMPATIBILITY_DOC = ROOT / "docs" / "compatibility.md"

#: Values two runs of the same server do not repeat: where the path matches, only shapes count.
VOLATILE = (
    "$.id",
    "$*.created",
    "$*system_fingerprint",
    "$*.timings*",
    "$*.id_slot",
    "$*.tokens_cached",
    "$*.usage.prompt_tokens_details*",
    "$*.prompt_progress*",
    "$*.error.message",
    # llama-server's /props and /slots describe the process (its path, its slots' states).
    "$*.model_path",
    "$*.is_processing",
    "$*.next_token*",
    "$*.n_decoded",
    "$*.build_info",
    "$*.id_task",
    # A random marker each llama-server process draws for itself.
    "$.media_marker",
    # A slot's settings are those of the last request it ran, which differ between two servers.
    "$[].params*",
    "$stream.*.id",
)


@dataclass(frozen=True)
class Answer:
    status: int
    media_type: str
    #: The parsed JSON body; for a stream, the list of its events' data (JSON, or the raw text).
    body: Any


def ask(base_url: str, method: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Answer:
    response = requests.request(
        method, base_url + path, json=body if method != "GET" else None, headers=headers, timeout=120
    )
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    if media_type == "text/event-stream":
        return Answer(response.status_code, media_type, _events(response.text))
    try:
        parsed = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        parsed = response.text
    return Answer(response.status_code, media_type, parsed)


def _events(text: str) -> list[Any]:
    events: list[Any] = []
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        try:
            events.append(orjson.loads(data))
        except orjson.JSONDecodeError:
            events.append(data)
    return events


def differences(reference: Answer, velesio: Answer) -> list[str]:
    """What velesio's answer does differently, one line each (empty when it answers the same)."""
    found = []
    if reference.status != velesio.status:
        found.append(f"status {reference.status} != {velesio.status}")
        return found
    if reference.media_type != velesio.media_type:
        found.append(f"media type {reference.media_type} != {velesio.media_type}")
    if reference.media_type == "text/event-stream" and isinstance(reference.body, list):
        found += _stream_differences(reference.body, velesio.body if isinstance(velesio.body, list) else [])
    else:
        found += _compare(reference.body, velesio.body, "$")
    return found


def _stream_differences(reference: list[Any], velesio: list[Any]) -> list[str]:
    if not reference or not velesio:
        return [] if reference == velesio else ["stream: events missing"]
    found = []
    if _text(reference) != _text(velesio):
        found.append(f"stream text {_text(reference)!r} != {_text(velesio)!r}")
    found += _compare(_last_json(reference), _last_json(velesio), "$stream.last")
    found += _compare(reference[0], velesio[0], "$stream.first")
    return found


def _last_json(events: list[Any]) -> Any:
    return next((event for event in reversed(events) if isinstance(event, dict)), None)


def _text(events: list[Any]) -> str:
    """The text the events add up to, choice by choice (in index order): two servers interleave
    the chunks of several choices as their slots run, which only the order of arrival shows."""
    pieces: dict[int, list[str]] = {}
    for event in events:
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("content"), str):
            pieces.setdefault(int(event.get("index") or 0), []).append(event["content"])
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            pieces.setdefault(int(choice.get("index") or 0), []).append(
                delta.get("content") or choice.get("text") or ""
            )
    return "|".join("".join(pieces[index]) for index in sorted(pieces))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _volatile(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in VOLATILE)


def _compare(reference: Any, velesio: Any, path: str) -> list[str]:
    if _kind(reference) != _kind(velesio):
        return [f"{path}: {_kind(reference)} != {_kind(velesio)}"]
    if isinstance(reference, dict):
        found = [f"{path}.{key}: missing" for key in reference if key not in velesio]
        found += [f"{path}.{key}: extra" for key in velesio if key not in reference]
        for key in reference.keys() & velesio.keys():
            found += _compare(reference[key], velesio[key], f"{path}.{key}")
        return found
    if isinstance(reference, list):
        found = []
        if len(reference) != len(velesio) and not _volatile(path):
            found.append(f"{path}: {len(reference)} items != {len(velesio)}")
        for one, other in zip(reference, velesio, strict=False):
            found += _compare(one, other, f"{path}[]")
        return found
    if _volatile(path):
        return []
    if isinstance(reference, float) or isinstance(velesio, float):
        same = math.isclose(reference, velesio, rel_tol=1e-4, abs_tol=1e-6)
    else:
        same = reference == velesio
    return [] if same else [f"{path}: {reference!r} != {velesio!r}"]


@dataclass(frozen=True)
class KnownDifference:
    route: str
    pattern: str
    reason: str

    def explains(self, route: str, difference: str) -> bool:
        return fnmatch.fnmatchcase(route, self.route) and fnmatch.fnmatchcase(difference, self.pattern)


_ROW = re.compile(r"^\|\s*`(?P<route>[^`]+)`\s*\|\s*`(?P<pattern>[^`]+)`\s*\|\s*(?P<reason>.+?)\s*\|\s*$")


def documented_differences(doc: Path = COMPATIBILITY_DOC) -> list[KnownDifference]:
    """The rows of docs/compatibility.md's "Known differences" table."""
    text = doc.read_text()
    section = text.split("## Known differences", 1)[1].split("\n## ", 1)[0]
    known = []
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            known.append(KnownDifference(match["route"], match["pattern"], match["reason"]))
    return known


def undocumented(route: str, found: list[str], known: list[KnownDifference]) -> list[str]:
    return [line for line in found if not any(entry.explains(route, line) for entry in known)]
