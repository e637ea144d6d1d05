"""Argument checks every session adapter runs before any I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .base import DOC_NAMES, LOG_NAMES, Changes, InvalidId, JSONDict, check_request_key


def check_doc(name: str) -> str:
    if name not in DOC_NAMES:
        raise InvalidId(f"unknown document {name!r}")
    return name


def check_log(name: str) -> str:
    if name not in LOG_NAMES:
        raise InvalidId(f"unknown log {name!r}")
    return name


def check_fields(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    if not all(isinstance(k, str) and k for k in fields):
        raise InvalidId("document field names must be non-empty strings")
    check_storable(fields)
    return fields


def check_entries(entries: Sequence[JSONDict]) -> Sequence[JSONDict]:
    if not all(isinstance(e, dict) for e in entries):
        raise InvalidId("log entries must be JSON objects")
    check_storable(entries)
    return entries


_INT_RANGE: Final = range(-(2**63), 2**64)  # what the JSON reader (orjson) reads back exactly


def check_storable(value: Any) -> None:
    """Every store must give back exactly what it was given, so only strict JSON goes in:
    string keys, finite floats, integers within 64 bits (a wider one would read back as a
    float), and no other types. A ValueError is a bug in the caller, never user input."""
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if value not in _INT_RANGE:
            raise ValueError("integer outside 64 bits cannot be stored exactly")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinities are not JSON")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"JSON object keys must be strings, not {type(key).__name__}")
            check_storable(item)
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable(item)
    else:
        raise ValueError(f"{type(value).__name__} is not a JSON value")


def check_changes(changes: Changes) -> Changes:
    """Every part of a unit of work checked before anything of it is written."""
    for doc, fields in changes.docs.items():
        check_doc(doc)
        check_fields(fields)
    for log, entries in changes.logs.items():
        check_log(log)
        check_entries(entries)
    for key, record in changes.requests.items():
        check_request_key(key)
        check_fields(record)
    if changes.owner_id is not None:
        if not isinstance(changes.owner_id, str) or not changes.owner_id:
            raise ValueError("owner_id must be a non-empty string")
        if changes.docs or changes.logs or changes.requests:
            raise ValueError("a commit that gives a session an owner changes nothing else")
    return changes
