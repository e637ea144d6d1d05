"""Upload validation: content sniffing, bomb guard, corrupt input, metadata stripped, orientation."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from app.agents.errors import AgentError
from app.agents.uploads import (
    ImageTooLarge,
    UnsupportedImage,
    UploadError,
    ext_for,
    normalise_upload,
)
from app.domain.images import sniff_image_type

LIMIT = 20_000_000
GPS_IFD = 0x8825
ORIENTATION = 0x0112
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>secret-place</rdf:RDF></x:xmpmeta>'


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def picture(size: tuple[int, int] = (64, 48)) -> Image.Image:
    image = Image.new("RGB", size, (30, 120, 200))
    image.paste((220, 60, 40), (0, 0, size[0] // 2, size[1]))  # left half red
    return image


def camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "ExampleCam"  # Make
    exif[0x0110] = "Model X"  # Model
    exif[0x0132] = "2024:05:01 10:00:00"  # DateTime
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"  # GPSLatitudeRef
    gps[2] = (35.0, 39.0, 29.0)  # GPSLatitude
    gps[3] = "E"
    gps[4] = (139.0, 44.0, 28.0)
    return exif


def png_declaring(width: int, height: int) -> bytes:
    """A tiny 1-bit PNG whose header claims `width` x `height` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")


# --- sniffing ----------------------------------------------------------------------------
def test_a_jpeg_named_png_is_sniffed_as_jpeg_by_its_content() -> None:
    data = encode(picture(), "JPEG")  # whatever the browser called it ("photo.png")

    assert sniff_image_type(data[:16]) == "image/jpeg"
    assert normalise_upload(data, max_pixels=LIMIT)[1] == "image/jpeg"


def test_png_and_webp_are_sniffed_from_their_magic_bytes() -> None:
    assert sniff_image_type(encode(picture(), "PNG")) == "image/png"
    assert sniff_image_type(encode(picture(), "WEBP")) == "image/webp"


@pytest.mark.parametrize(
    "head",
    [b"", b"hello world", b"GIF89a....", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\xff\xd8", b"<svg"],
    ids=["empty", "text", "gif", "riff-wave", "short-jpeg", "svg"],
)
def test_anything_else_is_not_sniffed(head: bytes) -> None:
    assert sniff_image_type(head) is None


# --- refusals ----------------------------------------------------------------------------
def test_upload_errors_are_agent_errors() -> None:
    assert issubclass(UploadError, AgentError)
    assert issubclass(UnsupportedImage, UploadError)
    assert issubclass(ImageTooLarge, UploadError)


def test_text_bytes_are_unsupported() -> None:
    with pytest.raises(UnsupportedImage):
        normalise_upload("これは画像ではありません".encode(), max_pixels=LIMIT)


def test_gif_is_unsupported_even_though_pillow_reads_it() -> None:
    with pytest.raises(UnsupportedImage):
        normalise_upload(encode(picture(), "GIF"), max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_truncated_image_is_unsupported(fmt: str) -> None:
    data = encode(picture((400, 300)), fmt)

    with pytest.raises(UnsupportedImage):
        normalise_upload(data[: len(data) // 2], max_pixels=LIMIT)


def test_a_png_signature_followed_by_garbage_is_unsupported() -> None:
    with pytest.raises(UnsupportedImage):
        normalise_upload(b"\x89PNG\r\n\x1a\n" + b"\x13" * 100, max_pixels=LIMIT)


def test_a_header_claiming_30000x30000_is_too_large_without_decoding() -> None:
    bomb = png_declaring(30_000, 30_000)
    assert len(bomb) < 200

    started = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        normalise_upload(bomb, max_pixels=LIMIT)
    assert time.perf_counter() - started < 1.0


def test_max_pixels_is_checked_from_the_header_below_pillows_own_limit() -> None:
    bomb = png_declaring(5_000, 5_000)  # 25 M pixels: Pillow alone would happily decode it

    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as caught:
        normalise_upload(bomb, max_pixels=1_000_000)
    assert time.perf_counter() - started < 1.0
    assert (caught.value.pixels, caught.value.limit) == (25_000_000, 1_000_000)


def test_pillows_bomb_warning_becomes_too_large_when_warnings_are_errors() -> None:
    bomb = png_declaring(10_000, 10_000)  # above Pillow's warning threshold, below ours

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLarge):
            normalise_upload(bomb, max_pixels=10**9)


def test_a_real_image_just_over_the_limit_is_too_large() -> None:
    with pytest.raises(ImageTooLarge):
        normalise_upload(encode(picture((101, 100)), "PNG"), max_pixels=100 * 100)


# --- re-encoding -------------------------------------------------------------------------
def test_jpeg_exif_gps_xmp_and_comment_are_removed() -> None:
    data = encode(picture(), "JPEG", exif=camera_exif(), xmp=XMP, comment=b"secret-comment")
    assert opened(data).getexif().get_ifd(GPS_IFD)  # the input really carries GPS

    out, content_type = normalise_upload(data, max_pixels=LIMIT)
    image = opened(out)

    assert content_type == "image/jpeg"
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert dict(image.getexif()) == {}
    assert image.getexif().get_ifd(GPS_IFD) == {}
    for marker in (b"Exif", b"ExampleCam", b"xmpmeta", b"secret", b"http://ns.adobe.com"):
        assert marker not in out
    assert not {"exif", "xmp", "comment", "icc_profile"} & set(image.info)


def test_png_text_chunks_and_exif_are_removed() -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("Location", "35.6586 N, 139.7454 E")
    data = encode(picture(), "PNG", pnginfo=text, exif=camera_exif())

    out, content_type = normalise_upload(data, max_pixels=LIMIT)
    image = opened(out)

    assert content_type == "image/png"
    assert dict(image.getexif()) == {}
    assert b"Location" not in out
    assert b"eXIf" not in out
    assert b"Exif" not in out
    assert image.info == {}


def test_webp_stays_webp_without_metadata() -> None:
    data = encode(picture(), "WEBP", exif=camera_exif(), xmp=XMP)
    assert b"EXIF" in data

    out, content_type = normalise_upload(data, max_pixels=LIMIT)

    assert content_type == "image/webp"
    assert opened(out).format == "WEBP"
    assert dict(opened(out).getexif()) == {}
    assert b"EXIF" not in out
    assert b"XMP " not in out


def test_an_icc_profile_is_not_kept() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(picture(), "JPEG", icc_profile=icc)
    assert opened(data).info.get("icc_profile")

    out, _ = normalise_upload(data, max_pixels=LIMIT)

    assert "icc_profile" not in opened(out).info


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # the camera was turned: display rotated 90° clockwise

    out, _ = normalise_upload(encode(picture((2, 1)), "JPEG", exif=exif), max_pixels=LIMIT)

    assert opened(out).size == (1, 2)
    assert dict(opened(out).getexif()) == {}


def test_orientation_moves_the_pixels_not_just_the_size() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6

    out, _ = normalise_upload(encode(picture((80, 40)), "PNG", exif=exif), max_pixels=LIMIT)
    image = opened(out).convert("RGB")

    assert image.size == (40, 80)
    assert image.getpixel((20, 5)) == (220, 60, 40)  # the left (red) half is now on top
    assert image.getpixel((20, 75)) == (30, 120, 200)


def test_a_cmyk_jpeg_comes_back_as_rgb() -> None:
    out, content_type = normalise_upload(
        encode(picture().convert("CMYK"), "JPEG"), max_pixels=LIMIT
    )

    assert content_type == "image/jpeg"
    assert opened(out).mode == "RGB"


def test_a_paletted_png_keeps_its_transparency() -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    out, _ = normalise_upload(encode(image, "PNG", transparency=0), max_pixels=LIMIT)
    result = opened(out)

    assert result.mode == "RGBA"
    assert result.getpixel((8, 5)) == (0, 0, 0, 0)
    assert result.getpixel((2, 5)) == (255, 0, 0, 255)


def test_pixels_survive_reencoding() -> None:
    out, _ = normalise_upload(encode(picture(), "PNG"), max_pixels=LIMIT)

    assert opened(out).convert("RGB").tobytes() == picture().tobytes()


def test_ext_for_gives_the_file_extension() -> None:
    assert [ext_for(t) for t in ("image/jpeg", "image/png", "image/webp")] == ["jpg", "png", "webp"]
    with pytest.raises(ValueError):
        ext_for("image/gif")
