"""The offline image brain: portraits derived from the description, children from both parents."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw

from app.agents.brains import BrainError, GeneratedImage, ImageBrain
from app.brains.offline import images as offline_images
from app.brains.offline.images import SIZE, OfflineImageBrain
from app.domain.profile import Child

RGB = tuple[int, int, int]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def brain() -> ImageBrain:
    return OfflineImageBrain()


async def partner(description: str, gender: str | None = "女性") -> GeneratedImage:
    return await brain().partner_image(description=description, gender=gender)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def changed_fraction(a: bytes, b: bytes) -> float:
    diff = ImageChops.difference(decoded(a).convert("RGB"), decoded(b).convert("RGB")).convert("L")
    histogram = diff.histogram()
    return 1 - sum(histogram[:8]) / (SIZE * SIZE)


def photo(skin: RGB, hair: RGB, background: RGB, fmt: str = "JPEG") -> bytes:
    """A crude head-and-shoulders picture of a parent."""
    image = Image.new("RGB", (300, 360), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((80, 40, 220, 150), fill=hair)
    draw.ellipse((95, 70, 205, 230), fill=skin)
    draw.rectangle((60, 260, 240, 360), fill=(60, 80, 120))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


USER = photo((230, 190, 160), (40, 30, 25), (200, 220, 240))
PARTNER = photo((245, 215, 195), (200, 160, 90), (240, 210, 200), fmt="PNG")
CHILD: dict[str, Any] = {"name": "さくら", "desired_gender": "女の子"}


async def child(user: bytes = USER, partner_img: bytes = PARTNER, **extra: Any) -> GeneratedImage:
    spec = Child.model_validate({**CHILD, **extra})
    return await brain().child_image(
        user_photo=user, partner_image=partner_img, child=spec, index=1
    )


# --- partner ---------------------------------------------------------------------------
async def test_partner_portrait_is_a_png_of_the_stated_size() -> None:
    image = await partner("黒髪のロングで笑顔が素敵な人")

    assert image.content_type == "image/png"
    assert image.data.startswith(PNG_SIGNATURE)
    assert decoded(image.data).size == (SIZE, SIZE) == (512, 512)
    assert (image.meta["width"], image.meta["height"]) == (SIZE, SIZE)
    assert image.meta["engine"] == "offline"


async def test_identical_inputs_give_identical_bytes() -> None:
    first = await partner("茶髪のボブで眼鏡をかけた優しい人", "男性")
    second = await partner("茶髪のボブで眼鏡をかけた優しい人", "男性")

    assert first.data == second.data
    assert first.meta == second.meta


async def test_different_descriptions_give_visibly_different_portraits() -> None:
    a = await partner("黒髪のロングで大きな目、色白")
    b = await partner("金髪のショートで切れ長の目、日焼け")

    assert a.data != b.data
    assert changed_fraction(a.data, b.data) > 0.05


async def test_gender_changes_the_style_and_is_never_fixed() -> None:
    description = "黒髪で優しい目の人"
    images = {g: await partner(description, g) for g in ("女性", "男性", None)}

    assert {image.meta["style"] for image in images.values()} == {"female", "male", "neutral"}
    assert len({image.data for image in images.values()}) == 3
    assert changed_fraction(images["女性"].data, images["男性"].data) > 0.02


async def test_meta_reflects_the_features_read_from_the_description() -> None:
    image = await partner("黒髪のロングで、眼鏡をかけていて、笑顔が素敵。丸顔で色白。", "女性")
    meta = image.meta

    assert meta["hair"] == "black-long"
    assert (meta["hair_colour"], meta["hair_length"]) == ("black", "long")
    assert meta["glasses"] is True
    assert meta["expression"] == "grin"
    assert meta["face"] == "round"
    assert meta["skin"] == "fair"
    assert meta["beard"] is None
    assert {"hair_colour", "hair_length", "glasses", "expression", "face", "skin"} <= set(
        meta["from_description"]
    )


@pytest.mark.parametrize(
    ("description", "key", "expected"),
    [
        ("金髪のボブ", "hair", "blonde-bob"),
        ("白髪交じりの短髪", "hair", "salt-pepper-short"),
        ("茶髪のセミロング", "hair", "brown-medium"),
        ("坊主頭", "hair_length", "buzz"),
        ("ポニーテール", "hair_length", "ponytail"),
        ("切れ長の目", "eyes", "narrow"),
        ("優しい目をしている", "eyes", "gentle"),
        ("ぱっちりした大きな目", "eyes", "large"),
        ("面長の顔", "face", "long"),
        ("日焼けした肌", "skin", "tan"),
        ("無精ひげ", "beard", "stubble"),
        ("あごひげ", "beard", "full"),
        ("黒縁の丸眼鏡", "glasses_style", "black-round"),
        ("クールで知的", "expression", "neutral"),
    ],
)
def test_each_keyword_maps_to_its_feature(description: str, key: str, expected: str) -> None:
    _, meta = offline_images.partner_look(description, "男性")

    assert meta[key] == expected


def test_denied_features_are_not_drawn() -> None:
    _, meta = offline_images.partner_look("眼鏡はかけていない。ひげもない。", "男性")

    assert meta["glasses"] is False
    assert meta["beard"] is None


def test_full_width_text_is_understood() -> None:
    _, meta = offline_images.partner_look("ﾒｶﾞﾈをかけたｼｮｰﾄ", None)

    assert meta["glasses"] is True
    assert meta["hair_length"] == "short"


def test_what_the_text_leaves_open_is_chosen_by_a_hash_of_the_description() -> None:
    metas = [offline_images.partner_look(f"素敵な人{i}", "女性")[1] for i in range(12)]

    assert all(m["from_description"] == [] for m in metas)
    assert len({m["skin"] for m in metas}) > 1
    assert len({m["hair"] for m in metas}) > 1
    assert metas[0] == offline_images.partner_look("素敵な人0", "女性")[1]


async def test_drawing_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real = offline_images.render_partner

    def spy(description: str, gender: str | None) -> GeneratedImage:
        threads.append(threading.get_ident())
        return real(description, gender)

    monkeypatch.setattr(offline_images, "render_partner", spy)
    await partner("黒髪")

    assert threads and threads[0] != threading.get_ident()


async def test_aclose_is_a_harmless_no_op() -> None:
    images = brain()
    await images.aclose()
    await images.aclose()

    assert (await images.partner_image(description="黒髪", gender=None)).data.startswith(
        PNG_SIGNATURE
    )


# --- child -----------------------------------------------------------------------------
async def test_child_image_is_a_png_with_offline_meta_and_no_name() -> None:
    image = await child()

    assert image.content_type == "image/png"
    assert decoded(image.data).size == (SIZE, SIZE)
    assert image.meta["engine"] == "offline"
    assert image.meta["kind"] == "child"
    assert CHILD["name"] not in json.dumps(image.meta, ensure_ascii=False)
    assert "name" not in image.meta


async def test_child_is_identical_for_identical_inputs() -> None:
    assert (await child()).data == (await child()).data


async def test_changing_the_user_photo_changes_the_child() -> None:
    other_user = photo((180, 130, 100), (20, 15, 15), (120, 160, 120))

    assert (await child(user=other_user)).data != (await child()).data


async def test_changing_the_partner_image_changes_the_child() -> None:
    other_partner = photo((250, 225, 210), (30, 25, 25), (220, 200, 240), fmt="PNG")

    assert (await child(partner_img=other_partner)).data != (await child()).data


async def test_even_a_tiny_change_to_one_parent_changes_the_child() -> None:
    image = decoded(PARTNER).convert("RGB")
    image.putpixel((0, 0), (0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")

    assert (await child(partner_img=out.getvalue())).data != (await child()).data


async def test_child_colours_are_blended_from_both_parents() -> None:
    dark = photo((120, 80, 60), (15, 10, 10), (90, 90, 90))
    light = photo((250, 228, 214), (220, 190, 120), (240, 240, 240))

    def lum(hex_colour: str) -> float:
        r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        return 0.299 * r + 0.587 * g + 0.114 * b

    both_dark, mixed, both_light = [
        (await child(user=u, partner_img=p)).meta
        for u, p in ((dark, dark), (dark, light), (light, light))
    ]
    for key in ("skin", "hair_colour"):
        assert lum(both_dark[key]) < lum(mixed[key]) < lum(both_light[key])
    assert mixed["parents"]["user"] == both_dark["parents"]["user"]
    assert mixed["parents"]["partner"] == both_light["parents"]["partner"]


async def test_desired_gender_changes_the_child_style() -> None:
    girl = await child(desired_gender="女の子")
    boy = await child(desired_gender="男の子")
    either = await child(desired_gender="どちらでも")

    assert (girl.meta["style"], boy.meta["style"], either.meta["style"]) == (
        "girl",
        "boy",
        "neutral",
    )
    assert len({girl.data, boy.data, either.data}) == 3


async def test_siblings_differ_by_index() -> None:
    spec = Child.model_validate(CHILD)
    first = await brain().child_image(user_photo=USER, partner_image=PARTNER, child=spec, index=1)
    second = await brain().child_image(user_photo=USER, partner_image=PARTNER, child=spec, index=2)

    assert first.data != second.data
    assert (first.meta["index"], second.meta["index"]) == (1, 2)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
async def test_parents_may_be_jpeg_png_or_webp(fmt: str) -> None:
    image = await child(user=photo((230, 190, 160), (40, 30, 25), (200, 220, 240), fmt=fmt))

    assert decoded(image.data).format == "PNG"


async def test_a_partner_portrait_can_be_a_parent() -> None:
    portrait = await partner("黒髪のロングで笑顔", "女性")

    assert decoded((await child(partner_img=portrait.data)).data).size == (SIZE, SIZE)


@pytest.mark.parametrize(
    "broken",
    [b"", b"not an image at all", PNG_SIGNATURE + b"\x00" * 40, PARTNER[: len(PARTNER) // 2]],
    ids=["empty", "text", "bad-png-header", "truncated-png"],
)
@pytest.mark.parametrize("which", ["user", "partner"])
async def test_undecodable_parent_is_a_brain_error(broken: bytes, which: str) -> None:
    with pytest.raises(BrainError):
        if which == "user":
            await child(user=broken)
        else:
            await child(partner_img=broken)


async def test_gif_parent_is_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 100, 100)).save(out, format="GIF")

    with pytest.raises(BrainError):
        await child(user=out.getvalue())
