"""Request bodies checked against a resource's schema, with errors that name the field.

Formats are checked here (email, date, date-time, uuid, uri, int32, int64) rather than trusting
jsonschema's optional extras, so a bad email is a 422 whatever is installed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from .errors import HttpError

MAX_DEPTH = 32

formats = jsonschema.FormatChecker(formats=())


@formats.checks("email")
def _email(v: Any) -> bool:
    return not isinstance(v, str) or bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v))


@formats.checks("date", raises=ValueError)
def _date(v: Any) -> bool:
    return not isinstance(v, str) or bool(dt.date.fromisoformat(v))


@formats.checks("date-time", raises=ValueError)
def _datetime(v: Any) -> bool:
    if not isinstance(v, str):
        return True
    if not re.match(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d", v):
        raise ValueError("not an RFC 3339 date-time")
    return bool(dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00")))


@formats.checks("uuid", raises=ValueError)
def _uuid(v: Any) -> bool:
    return not isinstance(v, str) or bool(uuid.UUID(v))


def _int_range(bits: int):
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def within(v: Any) -> bool:
        if isinstance(v, int) and not isinstance(v, bool) and not low <= v <= high:
            raise ValueError(f"out of range for a {bits}-bit integer")
        return True

    return within


formats.checks("int32", raises=ValueError)(_int_range(32))
formats.checks("int64", raises=ValueError)(_int_range(64))


@formats.checks("uri")
def _uri(v: Any) -> bool:
    return not isinstance(v, str) or bool(urlsplit(v).scheme)


def depth(value: Any) -> int:
    """Nesting depth, without recursion (a hostile body must not blow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_body(body: bytes, content_type: str) -> dict:
    """The body as a JSON object, or a 4xx that says what is wrong with it."""
    if not body.strip():
        raise HttpError(400, "the request body is empty; send a JSON object")
    if content_type and "json" not in content_type and content_type != "text/plain":
        raise HttpError(415, f"unsupported content type {content_type!r}; send application/json")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise HttpError(400, "the request body is not UTF-8 text") from None
    except RecursionError:
        raise HttpError(400, f"the JSON body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise HttpError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise HttpError(400, f"the request body must be a JSON object, not {type(data).__name__}")
    if depth(data) > MAX_DEPTH:
        raise HttpError(400, f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    return data


def check(schema: dict, data: dict) -> None:
    """Raise a 422 naming the first offending field (all of them under "errors")."""
    validator = jsonschema.Draft7Validator(schema, format_checker=formats)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        return
    listed = []
    for e in errors[:20]:
        path = [str(p) for p in e.absolute_path]
        if e.validator == "required" and isinstance(e.instance, dict):
            missing = next((r for r in e.validator_value if r not in e.instance), None)
            path.append(str(missing))
            msg = f"{'.'.join(path)} is required"
        else:
            msg = f"{'.'.join(path) or 'body'}: {e.message}"
            if e.validator == "format" and e.cause is not None:
                msg += f" ({e.cause})"
        listed.append({"field": ".".join(path) or None, "message": msg[:300]})
    first = listed[0]
    raise HttpError(422, first["message"], first["field"], errors=listed)
