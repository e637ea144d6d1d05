"""Offline images: portraits drawn with Pillow, deterministic, no network.

The partner's features are read from the Japanese description (hair colour and length,
glasses, beard, expression, eyes, face shape, skin ...) and styled by gender; a hash of the
description picks whatever the text leaves open. A child's colours are measured from both
parents' images (centre → skin and eyes, upper band → hair, dominant colours → background),
its small variations are seeded by both images' bytes, and soft medallions of both parents
are blended in: changing either parent changes the child. The child's name is never used.
The drawing itself (from a `Look` to PNG bytes) lives in `paint.py`.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import unicodedata
from dataclasses import dataclass

import anyio.to_thread
from PIL import Image, ImageOps

from app.agents.brains import BrainError, GeneratedImage, JSONDict
from app.brains.offline.paint import (
    CANVAS,
    RGB,
    WHITE,
    Look,
    encode_png,
    lum,
    medallion,
    mix,
    paint,
    rgb,
    shade,
    to_hex,
)
from app.brains.offline.paint import SIZE as SIZE  # re-exported: the public size
from app.domain.profile import Child

_MAX_PARENT_PIXELS = 60_000_000
Table = tuple[tuple[str, tuple[str, ...]], ...]


# --- small helpers ------------------------------------------------------------------------
def _palette(spec: str) -> tuple[RGB, ...]:
    return tuple(rgb(c) for c in spec.split())


def _table(spec: str) -> Table:
    """Lines of `name word word ...`; the first line whose word occurs wins."""
    return tuple((name, tuple(words)) for name, *words in map(str.split, spec.strip().splitlines()))


# --- partner: reading the description -------------------------------------------------------
_CLAUSE_END = re.compile(r"[。、,.!！?？\n]")
_NEGATIONS = ("ない", "なし", "無し", "無い", "ません")
_HAIR_COLOURS = _table("""
blonde 金髪 ブロンド 金色の髪
salt-pepper 白髪交じり 白髪まじり ロマンスグレー
grey 白髪 銀髪 グレーヘア グレーの髪 シルバーの髪
red 赤毛 赤髪 赤い髪
brown 茶髪 茶色い髪 茶色の髪 ブラウンの髪 栗色
black 黒髪 黒い髪 黒色の髪
""")
_HAIR_RGB = {
    "blonde": rgb("deb86c"), "salt-pepper": rgb("767476"), "grey": rgb("c6c6cc"),
    "red": rgb("964028"), "brown": rgb("70462a"), "black": rgb("201c20"),
    "dark-brown": rgb("402c22"),
}  # fmt: skip
_DEFAULT_HAIR = ("black", "dark-brown", "black", "brown")
_LENGTHS = _table("""
buzz 坊主 スキンヘッド 丸刈り 五分刈り
ponytail ポニーテール ポニテ 髪を結
bob ボブ おかっぱ
medium セミロング ミディアム 肩まで 肩にかかる
long ロング 長い髪 長髪 髪が長 髪の長
short ショート 短い髪 短髪 髪が短 髪の短 刈り上げ
""")
_EXPRESSIONS = _table("""
grin 笑顔 よく笑 にこにこ ニコニコ 明るい 朗らか ほがらか 元気
smile 微笑 ほほえ 優し やさし 穏やか おだやか 柔らか 温か あたたか
neutral クール 真面目 まじめ 無表情 凛 知的 落ち着
""")
_EYES = _table("""
gentle 優しい目 やさしい目 優しそうな目 優しい眼差し 垂れ目 たれ目 タレ目 穏やかな目
large 大きな目 大きい目 目が大き ぱっちり パッチリ つぶら 大きな瞳
narrow 切れ長 細い目 目が細 一重 つり目 ツリ目
""")
_EYE_COLOURS = _table("""
blue 青い目 碧眼 青い瞳 ブルーの目 ブルーの瞳
green 緑の目 緑の瞳 グリーンの目 グリーンの瞳
hazel ヘーゼル 琥珀色の
""")
_EYE_RGB = {"blue": rgb("4678b4"), "green": rgb("50825a"), "hazel": rgb("8c6432")}
_FACES = _table("""
round 丸顔 丸い顔 童顔 ふっくら
long 面長 細面 細い顔 シャープな顔
square 四角い顔 エラ 角ばった がっしり ベース型
oval 卵型 卵形 たまご型 うりざね
""")
_FACE_SHAPES = {  # width, height, jaw taper, squareness (multipliers)
    "round": (1.08, 0.9, 0.5, 1.0), "long": (0.92, 1.12, 1.0, 1.0), "square": (1.04, 1.0, 0.6, 1.35),
}  # fmt: skip
_SKINS = _table("""
fair 色白 白い肌 肌が白 透明感
tan 日焼け 褐色 小麦色 浅黒 色黒
""")
_SKIN_RGB = {"fair": rgb("fae2d2"), "tan": rgb("c48e68")}
_DEFAULT_SKINS = _palette("f6d9c4 f0ceb5 e8c2a6 e0b899")
_BEARDS = _table("""
stubble 無精ひげ 無精髭 無精ヒゲ 不精ひげ
moustache 口ひげ 口髭 口ヒゲ
full あごひげ 顎ひげ 顎髭 ひげ 髭 ヒゲ
""")
_EXTRAS = _table("""
freckles そばかす ソバカス
earrings ピアス イヤリング
suit スーツ ネクタイ
""")
_FRAMES = _table("""
black 黒縁
gold 金縁 金のフレーム
silver 銀縁 メタルフレーム
brown べっこう 茶色のフレーム
""")
_FRAME_RGB = {
    "black": rgb("1c1c1e"), "brown": rgb("6e4628"), "gold": rgb("c4a050"), "silver": rgb("a0a4aa"),
}  # fmt: skip
_CLOTHES = _palette("466ea0 a0505c 5c8c70 c8a878 7864a0 e8e6e0 3e485c be7a52")
_BG = _palette("d6e6f5 aac4e4 f8e4d6 ecbeaa e2f2e2 b2d6ba f0e4f8 ccbae4 faf2d2 ead4a0")
_BACKGROUNDS = tuple(zip(_BG[::2], _BG[1::2], strict=True))


@dataclass(frozen=True, slots=True)
class _Style:
    face_w: float
    face_h: float
    jaw: float
    square: float
    brow: float
    lashes: bool
    lips: RGB | None
    blush: int
    shoulders: float
    neckline: str
    lengths: tuple[str, ...]


_STYLES = {
    "female": _Style(0.158, 0.212, 0.26, 2.0, 0.009, True, rgb("ce626e"), 70, 0.29, "scoop",
                     ("long", "medium", "bob", "ponytail", "long")),
    "male": _Style(0.172, 0.222, 0.14, 2.5, 0.016, False, None, 20, 0.37, "collar",
                   ("short", "short", "short", "buzz")),
    "neutral": _Style(0.165, 0.216, 0.2, 2.2, 0.012, False, rgb("c47878"), 45, 0.33, "crew",
                      ("short", "medium", "bob", "long")),
}  # fmt: skip
_FRINGE_CHOICES = {"long": ("side", "parted", "straight"), "bob": ("straight", "side")}
_FRINGE_CHOICES |= {"medium": _FRINGE_CHOICES["long"], "ponytail": ("side", "parted")}
_FRINGE_CHOICES |= {"short": ("side", "spiky"), "buzz": ("none",)}


def _said(text: str, words: tuple[str, ...]) -> bool:
    """A word occurs and its clause does not deny it (眼鏡なし, ひげはない)."""
    for word in words:
        start = text.find(word)
        while start != -1:
            tail = _CLAUSE_END.split(text[start + len(word) :], maxsplit=1)[0][:10]
            if not any(n in tail for n in _NEGATIONS):
                return True
            start = text.find(word, start + 1)
    return False


def _first(text: str, table: Table) -> str | None:
    return next((name for name, words in table if _said(text, words)), None)


def style_of(gender: str | None) -> str:
    """female / male / neutral from the profile's gender (男性, 女性, None, ...)."""
    g = (gender or "").strip().lower()
    if "女" in g or g in ("female", "woman", "f"):
        return "female"
    if "男" in g or g in ("male", "man", "m"):
        return "male"
    return "neutral"


def partner_look(description: str, gender: str | None) -> tuple[Look, JSONDict]:
    """The partner's look and the meta describing it, from the description and gender."""
    text = unicodedata.normalize("NFKC", description)
    seed = hashlib.sha256(text.strip().encode()).digest()
    style = style_of(gender)
    st = _STYLES[style]
    derived: list[str] = []

    def read(key: str, table: Table, slot: int, defaults: tuple[str, ...]) -> str:
        if (found := _first(text, table)) is not None:
            derived.append(key)
            return found
        return defaults[seed[slot] % len(defaults)]

    hair_name = read("hair_colour", _HAIR_COLOURS, 0, _DEFAULT_HAIR)
    length = read("hair_length", _LENGTHS, 1, st.lengths)
    fringes = (
        ("spiky", "side") if style == "male" and length == "short" else _FRINGE_CHOICES[length]
    )
    fringe = fringes[seed[2] % len(fringes)]
    expression = read("expression", _EXPRESSIONS, 4, ("smile", "soft", "smile", "grin"))
    eyes = read("eyes", _EYES, 5, ("normal", "normal", "large", "gentle"))
    eye_name = read("eye_colour", _EYE_COLOURS, 6, ("brown",))
    face = read("face", _FACES, 12, ("oval", "oval", "square") if style == "male" else ("oval",))
    skin_name = read("skin", _SKINS, 7, ("default",))
    beard = _first(text, _BEARDS)
    extras = {name: _said(text, words) for name, words in _EXTRAS}
    glasses = None
    if _said(text, ("眼鏡", "メガネ", "めがね")):
        glasses = (
            "round" if _said(text, ("丸眼鏡", "丸メガネ", "丸めがね", "丸い眼鏡")) else "square"
        )
    frame = _first(text, _FRAMES) or ("black", "brown", "gold", "silver")[seed[10] % 4]
    derived += [k for k, v in (("glasses", glasses), ("beard", beard), *extras.items()) if v]

    scale_w, scale_h, jaw, square = _FACE_SHAPES.get(face, (1.0, 1.0, 1.0, 1.0))
    dark = (seed[6] % 5) / 4
    look = Look(
        skin=_SKIN_RGB.get(skin_name) or _DEFAULT_SKINS[seed[7] % len(_DEFAULT_SKINS)],
        hair=_HAIR_RGB[hair_name],
        eye_colour=_EYE_RGB.get(eye_name) or mix(rgb("462e20"), rgb("281c16"), dark),
        clothes=rgb("2c3242") if extras["suit"] else _CLOTHES[seed[8] % len(_CLOTHES)],
        background=_BACKGROUNDS[seed[9] % len(_BACKGROUNDS)],
        hair_length=length,
        fringe=fringe,
        flip=bool(seed[3] % 2),
        face_w=st.face_w * scale_w,
        face_h=st.face_h * scale_h,
        jaw=st.jaw * jaw,
        square=st.square * square,
        eye_size={"large": 1.25, "narrow": 1.1}.get(eyes, 1.0),
        eye_shape=eyes,
        brow=st.brow,
        expression=expression,
        lips=st.lips,
        lashes=st.lashes,
        blush=st.blush + (30 if skin_name == "fair" else 0),
        shoulders=st.shoulders,
        neckline="suit" if extras["suit"] else st.neckline,
        accent=_CLOTHES[seed[11] % len(_CLOTHES)],
        glasses=glasses,
        glasses_colour=_FRAME_RGB[frame],
        beard=beard,
        freckles=extras["freckles"],
        earrings=extras["earrings"],
        seed=seed,
    )
    meta: JSONDict = {
        "engine": "offline",
        "kind": "partner",
        "style": style,
        "hair": f"{hair_name}-{length}",
        "hair_colour": hair_name,
        "hair_length": length,
        "fringe": fringe,
        "glasses": glasses is not None,
        "glasses_style": f"{frame}-{glasses}" if glasses else None,
        "beard": beard,
        "expression": expression,
        "eyes": eyes,
        "eye_colour": eye_name,
        "face": face,
        "skin": to_hex(look.skin) if skin_name == "default" else skin_name,
        **extras,
        "from_description": sorted(derived),
        "width": SIZE,
        "height": SIZE,
    }
    return look, meta


def render_partner(description: str, gender: str | None) -> GeneratedImage:
    """Synchronous (CPU-bound): run it in a worker thread."""
    look, meta = partner_look(description, gender)
    return GeneratedImage(data=encode_png(paint(look)), content_type="image/png", meta=meta)


# --- child: measured from both parents -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Tones:
    skin: RGB
    hair: RGB
    eye: RGB
    dominant: RGB

    def meta(self) -> JSONDict:
        return {
            "skin": to_hex(self.skin),
            "hair": to_hex(self.hair),
            "dominant": to_hex(self.dominant),
        }


def _decode(data: bytes, who: str) -> Image.Image:
    try:
        source = Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"])
        if source.width * source.height > _MAX_PARENT_PIXELS:
            raise BrainError(f"the {who} is too large to use")
        source.draft("RGB", (512, 512))  # JPEG: decode at a reduced scale, much cheaper
        try:
            img = ImageOps.exif_transpose(source).convert("RGB")
        except (KeyError, TypeError, struct.error):  # unreadable EXIF: ignore the orientation
            img = source.convert("RGB")
        img.thumbnail((512, 512), Image.Resampling.LANCZOS)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise BrainError(f"the {who} could not be decoded as PNG, JPEG or WebP") from exc
    return img


def _pixels(img: Image.Image, box: tuple[int, int, int, int]) -> list[RGB]:
    bands = (band.tobytes() for band in img.crop(box).split())
    return sorted(zip(*bands, strict=True), key=lum)


def _mean(pixels: list[RGB]) -> RGB:
    n = max(1, len(pixels))
    r, g, b = (round(sum(p[i] for p in pixels) / n) for i in range(3))
    return (r, g, b)


def _tones(img: Image.Image) -> _Tones:
    """Skin: the brighter middle of the centre; hair: the darkest of the upper band."""
    small = img.resize((64, 64), Image.Resampling.BOX)
    centre, band = _pixels(small, (20, 18, 44, 44)), _pixels(small, (14, 6, 50, 24))
    quantised = small.quantize(4, method=Image.Quantize.MEDIANCUT)
    counts, palette = quantised.histogram(), quantised.getpalette() or [128] * 768
    i = max(range(len(counts)), key=lambda k: (counts[k], -k))
    return _Tones(
        skin=_mean(centre[len(centre) * 2 // 5 : len(centre) * 9 // 10]),
        hair=_mean(band[: len(band) // 4]),
        eye=_mean(centre[: len(centre) // 10]),
        dominant=(palette[i * 3], palette[i * 3 + 1], palette[i * 3 + 2]),
    )


def _child_style(desired: object) -> str:
    g = str(desired or "").lower()
    if any(w in g for w in ("女", "娘", "girl")):
        return "girl"
    if any(w in g for w in ("男", "息子", "boy")):
        return "boy"
    return "neutral"


def child_look(user: _Tones, partner: _Tones, style: str, seed: bytes) -> Look:
    """A child's look: colours blended from both parents, proportions of a young child."""
    skin = mix(mix(user.skin, partner.skin, 0.5), rgb("eeccb2"), 0.35)
    if lum(skin) < 120:  # a dark or odd photo centre: keep a believable skin tone
        skin = mix(skin, rgb("d6aa88"), 0.5)
    hair = mix(mix(user.hair, partner.hair, 0.5), rgb("281e1a"), 0.25)
    if lum(hair) > lum(skin) * 0.8:
        hair = shade(hair, 0.6)
    lengths = {"boy": ("short",), "girl": ("twintails", "bob", "long")}.get(style, ("bob", "short"))
    length = lengths[seed[1] % len(lengths)]
    fringes = {"short": ("spiky", "side")}.get(length, ("straight", "side", "parted"))
    parents = mix(user.dominant, partner.dominant, 0.5)
    return Look(
        skin=skin,
        hair=hair,
        eye_colour=mix(mix(user.eye, partner.eye, 0.5), rgb("48302a"), 0.5),
        clothes=mix(_CLOTHES[seed[8] % len(_CLOTHES)], parents, 0.3),
        background=(mix(user.dominant, WHITE, 0.55), mix(partner.dominant, WHITE, 0.45)),
        hair_length=length,
        fringe=fringes[seed[2] % len(fringes)],
        flip=bool(seed[3] % 2),
        head_y=0.45,
        face_w=0.19,
        face_h=0.19,
        jaw=0.1,
        eye_size=1.5,
        eye_shape="large",
        eye_line=0.1,
        brow=0.008,
        expression=("grin", "smile", "smile")[seed[4] % 3],
        lashes=style == "girl",
        blush=80 if style == "girl" else 60,
        shoulders=0.25,
        accent=_CLOTHES[seed[11] % len(_CLOTHES)],
        freckles=seed[5] % 5 == 0,
        ribbon=style == "girl",
        child=True,
        seed=seed,
    )


def render_child(
    user_photo: bytes, partner_image: bytes, child: Child, index: int
) -> GeneratedImage:
    """Synchronous (CPU-bound): run it in a worker thread. The child's name is not read."""
    user, partner = _decode(user_photo, "user photo"), _decode(partner_image, "partner image")
    user_tones, partner_tones = _tones(user), _tones(partner)
    style = _child_style(child.desired_gender)
    digest = hashlib.sha256()
    for part in (user_photo, partner_image, f"|{index}|{style}".encode()):
        digest.update(hashlib.sha256(part).digest())
    look = child_look(user_tones, partner_tones, style, digest.digest())
    img = paint(look)
    medallion(img, user, (CANVAS * 0.14, CANVAS * 0.14))
    medallion(img, partner, (CANVAS * 0.86, CANVAS * 0.14))
    meta: JSONDict = {
        "engine": "offline",
        "kind": "child",
        "index": index,
        "style": style,
        "hair_length": look.hair_length,
        "skin": to_hex(look.skin),
        "hair_colour": to_hex(look.hair),
        "eye_colour": to_hex(look.eye_colour),
        "parents": {"user": user_tones.meta(), "partner": partner_tones.meta()},
        "width": SIZE,
        "height": SIZE,
    }
    return GeneratedImage(data=encode_png(img), content_type="image/png", meta=meta)


class OfflineImageBrain:
    """The `ImageBrain` without a model: stateless; Pillow runs in a worker thread."""

    async def partner_image(self, *, description: str, gender: str | None) -> GeneratedImage:
        return await anyio.to_thread.run_sync(render_partner, description, gender)

    async def child_image(
        self, *, user_photo: bytes, partner_image: bytes, child: Child, index: int
    ) -> GeneratedImage:
        args = (user_photo, partner_image, child, index)
        return await anyio.to_thread.run_sync(render_child, *args)

    async def aclose(self) -> None:
        return None
