"""Argument checks every session adapter runs before any I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import DOC_NAMES, LOG_NAMES, InvalidId, JSONDict


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
    return fields


def check_entries(entries: Sequence[JSONDict]) -> Sequence[JSONDict]:
    if not all(isinstance(e, dict) for e in entries):
        raise InvalidId("log entries must be JSON objects")
    return entries
