"""Reading a JSON request body at the edge: malformed, too deep or not an object is a 400.

Python's json (and marshmallow after it) recurse once per nesting level, so a body of a
few kilobytes of `[[[[...` would raise RecursionError deep inside the stack and answer
500. No payload of the contract nests deeper than a handful of levels: anything deeper
than MAX_DEPTH is refused before any schema sees it.
"""
from __future__ import annotations

import json

from .errors import ApiError

MAX_DEPTH = 32


def depth_exceeds(value, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests objects/arrays more than `limit` levels deep (iterative, no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def load_json_object(body: bytes, shape: str) -> dict:
    """The JSON object in `body`; raises ApiError(400) naming what to send (`shape`) otherwise."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise ApiError(400, f"Body nests JSON more than {MAX_DEPTH} levels deep; send {shape}.", {"body": ["Nested too deeply."]}) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Body is not valid JSON: {exc}. Send {shape} as application/json.", {"body": ["Not valid JSON."]}) from None
    if not isinstance(value, dict):
        raise ApiError(400, f"Body must be a JSON object: {shape}.", {"body": ["Not a JSON object."]})
    if depth_exceeds(value):
        raise ApiError(400, f"Body nests JSON more than {MAX_DEPTH} levels deep; no payload of the contract does. Send {shape}.", {"body": ["Nested too deeply."]})
    return value
