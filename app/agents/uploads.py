"""Upload validation: recognise an image by its bytes, refuse bombs, re-encode without metadata.

Pure and synchronous (Pillow is CPU-bound): the caller runs it in a worker thread.

Formats: JPEG stays JPEG (RGB, quality 90), PNG stays PNG, WebP stays WebP (quality 90, so a
phone photo does not balloon into a multi-megabyte PNG; every browser and the image model read
WebP). Only the first frame of an animated PNG/WebP is kept. Colours tagged with an ICC profile
are converted to sRGB, then the profile is dropped with the rest of the metadata (EXIF, GPS,
XMP, comments, text chunks): the output image is rebuilt from raw pixels, so nothing from the
upload's `info` can leak into the encoder.
"""

from __future__ import annotations

import io

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from app.agents.errors import AgentError
from app.domain.images import sniff_image_type

_PIL_FORMAT: dict[str, str] = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_EXTENSIONS: dict[str, str] = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
# What a broken file makes Pillow raise while parsing or decoding.
_CORRUPT = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError)


class UploadError(AgentError):
    """The uploaded file is not an acceptable image."""


class UnsupportedImage(UploadError):
    """Not a JPEG, PNG or WebP (by content), or truncated/corrupt."""


class ImageTooLarge(UploadError):
    """More pixels than allowed (a decompression bomb, or just a huge image)."""

    def __init__(self, pixels: int | None, limit: int) -> None:
        super().__init__(f"image has too many pixels (limit {limit})")
        self.pixels = pixels
        self.limit = limit


def ext_for(content_type: str) -> str:
    """File extension for a content type returned by `normalise_upload`."""
    try:
        return _EXTENSIONS[content_type]
    except KeyError:
        raise ValueError(f"not an upload content type: {content_type!r}") from None


def normalise_upload(data: bytes, *, max_pixels: int) -> tuple[bytes, str]:
    """Validate `data` and re-encode it without metadata → (bytes, content type).

    Raises `UnsupportedImage` (unknown type, corrupt, truncated) or `ImageTooLarge` (more than
    `max_pixels`, checked from the header before any pixel is decoded).
    """
    content_type = sniff_image_type(data[:16])
    if content_type is None:
        raise UnsupportedImage("only JPEG, PNG and WebP images are accepted")
    try:
        # Lazy: this reads the header only; Pillow's own bomb check runs here too.
        img = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[content_type]])
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLarge(width * height, max_pixels)
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is only raised when the process turns warnings into errors.
        raise ImageTooLarge(None, max_pixels) from exc
    except _CORRUPT as exc:
        raise UnsupportedImage("the image is corrupt or truncated") from exc
    if width <= 0 or height <= 0:
        raise UnsupportedImage("the image is empty")
    try:
        clean = _rebuild(_upright(img), jpeg=content_type == "image/jpeg")
    except _CORRUPT as exc:
        raise UnsupportedImage("the image could not be decoded") from exc

    out = io.BytesIO()
    if content_type == "image/jpeg":
        clean.save(out, format="JPEG", quality=90, optimize=True)
    elif content_type == "image/png":
        clean.save(out, format="PNG", optimize=False)
    else:
        clean.save(out, format="WEBP", quality=90, method=4)
    return out.getvalue(), content_type


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; unreadable EXIF counts as "no orientation"."""
    try:
        return ImageOps.exif_transpose(img)
    except (*_CORRUPT, KeyError, TypeError):
        return img


def _rebuild(img: Image.Image, *, jpeg: bool) -> Image.Image:
    """A fresh image holding only pixels: sRGB, a plain mode, empty `info`."""
    img = _to_srgb(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    grey = img.mode in ("1", "L", "LA") or img.mode.startswith("I") or img.mode == "F"
    if jpeg:
        mode = "RGB"
    elif has_alpha:
        mode = "LA" if grey else "RGBA"
    else:
        mode = "L" if grey else "RGB"
    if img.mode != mode:
        if img.mode.startswith("I") or img.mode == "F":
            # 16/32-bit greyscale: scale to 8 bits first (a direct RGB conversion clips).
            img = img.point(lambda v: v / 256).convert("L")
        img = img.convert(mode)
    return Image.frombytes(img.mode, img.size, img.tobytes())


def _to_srgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(img, src, dst, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img  # a broken profile: keep the pixels as they are
    return converted if converted is not None else img
