"""JSON and timestamp encoding shared by the adapters (one place, one format)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .base import JSONDict, SessionMeta


def dumps(value: Any) -> str:
    # ensure_ascii=False keeps Japanese readable on disk and ~3x smaller than \\u escapes.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    return json.loads(text)


def meta_to_dict(meta: SessionMeta) -> JSONDict:
    return {
        "session_id": meta.session_id,
        "created_at": meta.created_at.isoformat(),
        "updated_at": meta.updated_at.isoformat(),
        "owner_id": meta.owner_id,
    }


def meta_from_dict(data: Mapping[str, Any]) -> SessionMeta:
    return SessionMeta(
        session_id=str(data["session_id"]),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        updated_at=datetime.fromisoformat(str(data["updated_at"])),
        owner_id=data.get("owner_id"),
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
