"""An entry of a session's image index: which blob holds a logical image (`user`,
`partner`, `child_<n>`), what it is, when it was made; and what an image's bytes say it is."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JSONDict = dict[str, Any]
ImageType = Literal["image/jpeg", "image/png", "image/webp"]


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


def sniff_image_type(head: bytes) -> ImageType | None:
    """The image type from the first bytes (12 suffice); file names are never consulted."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
