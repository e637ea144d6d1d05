"""JSON and timestamp encoding shared by the adapters (one place, one format)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from .base import JSONDict, SessionMeta


def dumps(value: Any) -> str:
    # ensure_ascii=False keeps Japanese readable on disk and ~3x smaller than \\u escapes;
    # allow_nan=False: the adapters' checks (`check_storable`) already refuse NaN.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def loads(text: str | bytes) -> Any:
    # orjson: 3-5x faster than json on Japanese text, on every read path. What it refuses
    # and json accepts (NaN, a byte-order mark: data written before values were checked, or
    # by hand) still reads as it always did; bad input raises a ValueError either way.
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def loads_all(items: Sequence[bytes]) -> list[Any]:
    """Many JSON values (a log's entries) in one parse instead of one call each."""
    return loads_array(b",".join(items))


def loads_array(body: bytes) -> list[Any]:
    """The comma-separated JSON values in `body`, parsed as one array."""
    items: list[Any] = loads(b"[" + body + b"]")  # raises unless a whole array
    return items


def loads_lines(raw: bytes) -> list[Any] | None:
    """All lines of a JSONL blob in one parse, or None when any line is unreadable."""
    try:
        return loads_array(raw.strip(b"\n").replace(b"\n", b","))
    except ValueError:
        return None


def meta_to_dict(meta: SessionMeta) -> JSONDict:
    return {
        "session_id": meta.session_id,
        "created_at": meta.created_at.isoformat(),
        "updated_at": meta.updated_at.isoformat(),
        "owner_id": meta.owner_id,
        "request_key": meta.request_key,
    }


def meta_from_dict(data: Mapping[str, Any]) -> SessionMeta:
    return SessionMeta(
        session_id=str(data["session_id"]),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        updated_at=datetime.fromisoformat(str(data["updated_at"])),
        owner_id=data.get("owner_id"),
        request_key=data.get("request_key"),
    )


def merge_fields(current: JSONDict, fields: Mapping[str, Any]) -> JSONDict:
    """Top-level merge used by `update`: a None value deletes the field."""
    merged = dict(current)
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged
