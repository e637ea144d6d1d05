"""Test images made with Pillow (no files in the repository)."""

from __future__ import annotations

import io

from PIL import Image


def jpeg_photo(
    size: tuple[int, int] = (320, 400), color: tuple[int, int, int] = (200, 160, 140)
) -> bytes:
    image = Image.new("RGB", size, color)
    for x in range(size[0] // 4, size[0] * 3 // 4):
        for y in range(size[1] // 4, size[1] // 2):
            image.putpixel((x, y), (90, 60, 40))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()
