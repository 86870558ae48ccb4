"""The part of Go's text/template that a per-request /api/generate ``template`` is rendered with.

Ollama renders a request's ``template`` with Go's text/template and its own variables. velesio
renders the templates that one-shot prompts use: ``{{ .System }}``, ``{{ .Prompt }}`` and
``{{ .Response }}`` (where the prompt ends and the model writes), ``{{ if .X }} ... {{ else }} ...
{{ end }}`` on those, and the ``{{-``/``-}}`` trim markers. Anything else (``range .Messages``,
functions, ``.Tools``) is refused with a 400 that says what is supported, rather than rendered
differently from Ollama.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ...errors import GatewayError, invalid_request

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.DOTALL)
_VARIABLE = re.compile(r"\.(System|Prompt|Response)")
_IF = re.compile(r"if\s+\.(System|Prompt|Response)")

_SUPPORTED = (
    "template: velesio renders {{ .System }}, {{ .Prompt }}, {{ .Response }} and {{ if .X }}/{{ else }}/{{ end }}"
)


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` rendered with ``values`` (System, Prompt) up to its ``{{ .Response }}``."""
    pieces = _pieces(template)
    out: list[str] = []
    # A stack of (the branch taken?, the enclosing output being written?) per open {{ if }}.
    stack: list[tuple[bool, bool]] = []
    writing = True
    for kind, text in pieces:
        if kind == "text":
            if writing:
                out.append(text)
        elif kind == "var":
            if writing and text == "Response":
                # As Ollama does: the prompt ends where the response is to go; the rest of the
                # template (its end-of-turn marker) is what the model writes after it.
                return "".join(out)
            if writing:
                out.append(values.get(text, ""))
        elif kind == "if":
            taken = bool(values.get(text))
            stack.append((taken, writing))
            writing = writing and taken
        elif kind == "else":
            if not stack:
                raise _unsupported("{{ else }} outside an {{ if }}")
            taken, outer = stack[-1]
            stack[-1] = (True, outer)
            writing = outer and not taken
        elif kind == "end":
            if not stack:
                raise _unsupported("{{ end }} without an {{ if }}")
            writing = stack.pop()[1]
    if stack:
        raise _unsupported("an {{ if }} has no {{ end }}")
    return "".join(out)


def _pieces(template: str) -> list[tuple[str, str]]:
    pieces: list[tuple[str, str]] = []
    position = 0
    trim_next = False
    for action in _ACTION.finditer(template):
        text = template[position : action.start()]
        if trim_next:
            text = text.lstrip()
        if action.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        pieces.append(_action(action.group(2)))
        trim_next = bool(action.group(3))
        position = action.end()
    tail = template[position:]
    pieces.append(("text", tail.lstrip() if trim_next else tail))
    return pieces


def _action(body: str) -> tuple[str, str]:
    if body.startswith("/*") and body.endswith("*/"):
        return ("text", "")
    if variable := _VARIABLE.fullmatch(body):
        return ("var", variable.group(1))
    if condition := _IF.fullmatch(body):
        return ("if", condition.group(1))
    if body in ("else", "end"):
        return (body, "")
    raise _unsupported(f"{{{{ {body} }}}} is not")


def _unsupported(what: str) -> GatewayError:
    return invalid_request(f"{_SUPPORTED}; {what}")
