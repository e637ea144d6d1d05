"""An entry of a session's image index: which blob holds a logical image (`user`,
`partner`, `child_<n>`), what it is, when it was made."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

JSONDict = dict[str, Any]


class ImageEntry(BaseModel):
    model_config = ConfigDict(frozen=True)
    key: str
    content_type: str
    etag: str
    size: int
    created_at: str
    meta: JSONDict  # always says which engine made it ("upload", "offline", "gemini", ...)

    def stored(self) -> JSONDict:
        return self.model_dump(mode="json")


def image_version(etag: str) -> str:
    """What makes a regenerated image a new URL (its content's tag, shortened)."""
    return etag[:12]
