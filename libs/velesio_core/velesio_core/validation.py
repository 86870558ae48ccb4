"""Turn a request body into a validated model, or a 400 that says what is wrong."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from .errors import invalid_request

M = TypeVar("M", bound=BaseModel)

#: The deepest nesting a request may have: a job travels as JSON written by orjson, which writes
#: at most 254 levels under the job's own object.
MAX_JSON_DEPTH = 250


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise invalid_request("the request body is empty; send a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise invalid_request(f"the request body is not valid JSON: {error}") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise invalid_request(f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def parse(model: type[M], body: Any) -> M:
    if not isinstance(body, dict):
        raise invalid_request(f"the request body must be a JSON object, not {_json_type(body)}")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise invalid_request(describe(error)) from None


def describe(error: ValidationError) -> str:
    """One line per problem, each naming the field, at most three."""
    problems = []
    for item in error.errors(include_url=False)[:3]:
        field = ".".join(str(part) for part in item["loc"] if not _is_union_branch(part)) or "body"
        problems.append(f"{field}: {item['msg'].removeprefix('Value error, ')}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _is_union_branch(part: Any) -> bool:
    # pydantic names the union member it tried ("str", "list[int]", "function-after[...]").
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool", "dict", "list"})


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
