"""Offline images: portraits drawn with Pillow, deterministic, no network.

The partner's features are read from the Japanese description (hair colour and length,
glasses, beard, expression, eyes, face shape, skin ...) and styled by gender; a hash of the
description picks whatever the text leaves open. A child's colours are measured from both
parents' images (centre → skin and eyes, upper band → hair, dominant colours → background),
its small variations are seeded by both images' bytes, and soft medallions of both parents
are blended in: changing either parent changes the child. The child's name is never used.
Drawing happens at 2x and is downsampled (cheap anti-aliasing); PNG output, identical bytes
for identical inputs. Shapes are in face units: (0, 0) the face centre, ±1 its edges.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import struct
import unicodedata
from dataclasses import dataclass

import anyio.to_thread
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from app.agents.brains.base import BrainError, GeneratedImage, JSONDict

SIZE = 512
_W = SIZE * 2  # the drawing canvas
_MAX_PARENT_PIXELS = 60_000_000
RGB = tuple[int, int, int]
Point = tuple[float, float]
Draw = ImageDraw.ImageDraw
Table = tuple[tuple[str, tuple[str, ...]], ...]


# --- small helpers ------------------------------------------------------------------------
def _rgb(spec: str) -> RGB:
    return (int(spec[0:2], 16), int(spec[2:4], 16), int(spec[4:6], 16))


def _palette(spec: str) -> tuple[RGB, ...]:
    return tuple(_rgb(c) for c in spec.split())


def _pts(spec: str) -> tuple[Point, ...]:
    return tuple((float(u), float(v)) for u, v in (p.split(",") for p in spec.split()))


def _table(spec: str) -> Table:
    """Lines of `name word word ...`; the first line whose word occurs wins."""
    return tuple((name, tuple(words)) for name, *words in map(str.split, spec.strip().splitlines()))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


def _shade(c: RGB, f: float) -> RGB:
    r, g, b = (min(255, round(x * f)) for x in c)
    return (r, g, b)


def _lum(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _hex(c: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c)


def _a(c: RGB, alpha: int) -> tuple[int, int, int, int]:
    return (*c, alpha)


_LINE, _WHITE = _rgb("3a2826"), _rgb("ffffff")


# --- the look: everything the painter needs -----------------------------------------------
@dataclass(frozen=True, slots=True)
class Look:
    skin: RGB
    hair: RGB
    eye_colour: RGB
    clothes: RGB
    background: tuple[RGB, RGB]
    hair_length: str  # buzz short medium bob long ponytail twintails
    fringe: str  # none side straight parted spiky
    flip: bool = False  # mirror asymmetric hair and the ribbon
    head_y: float = 0.43
    face_w: float = 0.165  # half-axes, fractions of the canvas
    face_h: float = 0.215
    jaw: float = 0.2  # chin taper
    square: float = 2.0  # 2 = ellipse, more = straighter cheeks
    eye_size: float = 1.0
    eye_shape: str = "normal"  # normal large narrow gentle
    eye_line: float = -0.08
    brow: float = 0.012
    expression: str = "smile"  # grin smile soft neutral
    lips: RGB | None = None
    lashes: bool = False
    blush: int = 40
    shoulders: float = 0.33
    neckline: str = "crew"  # crew scoop collar suit
    accent: RGB = (170, 50, 60)  # tie / ribbon
    glasses: str | None = None  # round square
    glasses_colour: RGB = (30, 30, 30)
    beard: str | None = None  # full stubble moustache
    freckles: bool = False
    earrings: bool = False
    ribbon: bool = False
    child: bool = False
    seed: bytes = bytes(32)


@dataclass(frozen=True, slots=True)
class _Frame:
    cx: float
    cy: float
    a: float
    b: float

    def p(self, u: float, v: float) -> Point:
        return (self.cx + u * self.a, self.cy + v * self.b)

    def box(self, u0: float, v0: float, u1: float, v1: float) -> tuple[float, float, float, float]:
        return (*self.p(min(u0, u1), v0), *self.p(max(u0, u1), v1))

    def poly(self, shape: tuple[Point, ...], sign: int = 1) -> list[Point]:
        return [self.p(sign * u, v) for u, v in shape]


# name → polygon in face units (a "lock" gets its two ends from the hair length)
_SHAPE_SPEC = """
side     -1.08,-0.2 -1.05,-0.75 -0.6,-1.14 0.2,-1.18 0.85,-0.95 1.09,-0.5 1.08,-0.15 0.9,-0.45 0.55,-0.62 0.1,-0.64 -0.4,-0.52 -0.82,-0.3
straight -1.08,-0.15 -1.05,-0.8 -0.55,-1.15 0.55,-1.15 1.05,-0.8 1.08,-0.15 0.92,-0.45 0.7,-0.4 0.47,-0.46 0.24,-0.4 0,-0.46 -0.24,-0.4 -0.47,-0.46 -0.7,-0.4 -0.92,-0.45
spiky    -1.08,-0.25 -1.02,-0.85 -0.5,-1.18 0.5,-1.18 1.02,-0.85 1.08,-0.25 0.95,-0.55 0.75,-0.64 0.6,-0.52 0.4,-0.7 0.2,-0.58 0,-0.72 -0.2,-0.58 -0.4,-0.7 -0.6,-0.55 -0.8,-0.66 -0.96,-0.5
parted   0.02,-1.14 0.6,-1.08 1.05,-0.7 1.08,-0.1 0.92,-0.3 0.7,-0.58 0.35,-0.82 0.04,-1
lock     0.94,-0.6 1.24,-0.5 1.3,0.5
shirt    -0.45,1.22 0.45,1.22 0.25,5 -0.25,5
tie      -0.1,1.34 0.1,1.34 0.16,5 -0.16,5
lapel    0.45,1.22 0.25,5 0.85,2.1
collar   0.4,1.18 0.04,1.7 0.62,1.52
v_neck   -0.36,1.22 0.36,1.22 0,1.72
beard    -0.9,0.15 -0.5,0.36 -0.2,0.4 0.2,0.4 0.5,0.36 0.9,0.15
moustache -0.34,0.49 0,0.41 0.34,0.49 0.38,0.55 0,0.48 -0.38,0.55
"""
_SHAPES = {n: _pts(" ".join(p)) for n, *p in map(str.split, _SHAPE_SPEC.strip().splitlines())}
_FRINGES: dict[str, tuple[tuple[tuple[Point, ...], int], ...]] = {
    name: ((_SHAPES[name], 1),) for name in ("side", "straight", "spiky")
}
_FRINGES["parted"] = ((_SHAPES["parted"], 1), (_SHAPES["parted"], -1))  # (shape, mirror)
_HAIR_ENDS = {"long": 2.4, "medium": 1.45, "bob": 0.92}


# --- the painter ------------------------------------------------------------------------
def _paint(look: Look) -> Image.Image:
    mask = Image.linear_gradient("L").resize((_W, _W))
    top, bottom = (Image.new("RGB", (_W, _W), c) for c in look.background)
    img = Image.composite(bottom, top, mask)
    d = ImageDraw.Draw(img, "RGBA")
    f = _Frame(_W / 2, _W * look.head_y, _W * look.face_w, _W * look.face_h)
    d.ellipse(f.box(-2.3, -1.9, 2.3, 2.1), fill=(255, 255, 255, 45))
    _back_hair(d, look, f)
    _body(d, look, f)
    _hair_cap(d, look, f)
    for s in (-1, 1):
        d.ellipse(f.box(s * 0.82, -0.14, s * 1.14, 0.26), fill=_shade(look.skin, 0.93))
    d.polygon(_face_outline(look, f), fill=look.skin)
    _cheeks(d, look, f)
    _beard(d, look, f)
    _front_hair(d, look, f)
    _brows(d, look, f)
    _eyes(img, d, look, f)
    _nose_and_mouth(d, look, f)
    _accessories(d, look, f)
    return img


def _face_outline(look: Look, f: _Frame, n: int = 120) -> list[Point]:
    pts = []
    for i in range(n):
        c, s = math.cos(2 * math.pi * i / n), math.sin(2 * math.pi * i / n)
        u = math.copysign(abs(c) ** (2 / look.square), c)
        if s > 0:  # narrow the lower half towards the chin
            u *= 1 - look.jaw * s * s
        pts.append(f.p(u, s))
    return pts


def _back_hair(d: Draw, look: Look, f: _Frame) -> None:
    h, length, side = look.hair, look.hair_length, -1 if look.flip else 1
    if length in _HAIR_ENDS:
        box = f.box(-1.3, -1.12, 1.3, _HAIR_ENDS[length] + 0.1)
        d.rounded_rectangle(box, radius=f.a * 0.75, fill=h)
    elif length == "ponytail":
        d.ellipse(f.box(side * 0.7, -0.9, side * 1.55, 1.4), fill=h)
    elif length == "twintails":
        for s in (-1, 1):
            d.ellipse(f.box(s * 1.0, -0.55, s * 1.8, 1.15), fill=h)


def _body(d: Draw, look: Look, f: _Frame) -> None:
    top, sw, skin = f.cy + f.b * (1.08 if look.child else 1.22), _W * look.shoulders, look.skin
    neck = 0.33 if look.lashes else 0.4
    d.rectangle((*f.p(-neck, 0.4), f.cx + f.a * neck, top + f.b * 0.2), fill=_shade(skin, 0.88))
    d.chord(f.box(-neck, 0.62, neck, 1.12), 0, 180, fill=_shade(skin, 0.78))  # under the chin
    d.rounded_rectangle((f.cx - sw, top, f.cx + sw, _W + sw), radius=sw * 0.55, fill=look.clothes)
    if look.neckline == "suit":
        d.polygon(f.poly(_SHAPES["shirt"]), fill=(245, 245, 242))
        d.polygon(f.poly(_SHAPES["tie"]), fill=look.accent)
        for s in (-1, 1):
            d.polygon(f.poly(_SHAPES["lapel"], s), fill=_shade(look.clothes, 0.8))
    elif look.neckline == "collar":
        d.polygon(f.poly(_SHAPES["v_neck"]), fill=_shade(skin, 0.88))
        for s in (-1, 1):
            d.polygon(f.poly(_SHAPES["collar"], s), fill=(246, 246, 244))
    else:
        v = (top - f.cy) / f.b
        box = f.box(-0.55, v - 0.25, 0.55, v + (0.45 if look.neckline == "scoop" else 0.22))
        d.chord(box, 0, 180, fill=_shade(skin, 0.88))
        d.arc(box, 0, 180, fill=_shade(look.clothes, 0.75), width=round(_W * 0.008))


def _hair_cap(d: Draw, look: Look, f: _Frame) -> None:
    if look.hair_length == "buzz":  # drawn over the scalp by _front_hair
        return
    d.chord(f.box(-1.14, -1.24, 1.14, 0.9), 180, 360, fill=look.hair)
    if look.hair_length == "short":  # sideburns
        for s in (-1, 1):
            d.rectangle(f.box(s * 1.06, -0.3, s * 0.9, 0.1), fill=look.hair)


def _front_hair(d: Draw, look: Look, f: _Frame) -> None:
    if look.hair_length in _HAIR_ENDS:  # side locks fall in front of the cheeks and shoulders
        end = _HAIR_ENDS[look.hair_length]
        lock = (*_SHAPES["lock"], (1.24, end), (0.96, end + 0.08), (0.9, 0.3))
        for s in (-1, 1):
            d.polygon(f.poly(lock, s), fill=look.hair)
    sign = -1 if look.flip else 1
    for shape, mirror in _FRINGES.get(look.fringe, ()):
        d.polygon(f.poly(shape, sign * mirror), fill=look.hair)
    if look.hair_length == "buzz":  # cropped hair: the scalp shows through
        d.chord(f.box(-1.03, -1.05, 1.03, -0.1), 180, 360, fill=_a(look.hair, 140))
    else:  # a soft shine on the crown
        shine = _a(_mix(look.hair, _WHITE, 0.45), 70)
        d.arc(f.box(-0.8, -1.12, 0.8, 0.2), 205, 250, fill=shine, width=round(f.a * 0.08))


def _cheeks(d: Draw, look: Look, f: _Frame) -> None:
    for s in (-1, 1):
        for k in range(4):
            r = 0.24 - k * 0.05
            box = f.box(s * 0.56 - r, 0.3 - r * 0.6, s * 0.56 + r, 0.3 + r * 0.6)
            d.ellipse(box, fill=(238, 112, 112, look.blush // 4))
    if look.freckles:
        for i in range(14):
            u = (0.3 + (look.seed[i] % 40) / 100) * (-1 if i % 2 else 1)
            v = 0.12 + (look.seed[i + 14] % 24) / 100
            d.ellipse(f.box(u - 0.025, v - 0.02, u + 0.025, v + 0.02), fill=_shade(look.skin, 0.72))


def _beard(d: Draw, look: Look, f: _Frame) -> None:
    if look.beard is None:
        return
    colour, stubble = _shade(look.hair, 0.9), look.beard == "stubble"
    if look.beard in ("full", "stubble"):
        outline = _face_outline(look, f)
        n = len(outline)
        jaw = outline[n // 40 : n // 2 - n // 40 + 1]  # the lower contour, right to left
        d.polygon(jaw + f.poly(_SHAPES["beard"]), fill=_a(colour, 80 if stubble else 235))
    d.polygon(f.poly(_SHAPES["moustache"]), fill=_a(colour, 80 if stubble else 245))


def _brows(d: Draw, look: Look, f: _Frame) -> None:
    v = look.eye_line - 0.16 - 0.1 * look.eye_size
    droop = {"gentle": 0.05, "narrow": -0.05}.get(look.eye_shape, 0.0)
    arch = 0.06 if look.lashes else 0.03
    for s in (-1, 1):
        pts = [f.p(s * 0.2, v + 0.02), f.p(s * 0.45, v - arch), f.p(s * 0.74, v + 0.03 + droop)]
        colour = _mix(look.hair, _LINE, 0.35)
        d.line(pts, fill=colour, width=round(_W * look.brow), joint="curve")


def _eye_curves(
    ex: float, ey: float, ew: float, eh: float, tilt: float, s: int
) -> tuple[list[Point], list[Point]]:
    upper, lower = [], []
    for i in range(25):
        t = i / 24
        off = tilt * eh * ((1 - t if s < 0 else t) - 0.5)  # raise or drop the outer corner
        x, k = ex - ew + 2 * ew * t, math.sin(math.pi * t)
        upper.append((x, ey - eh * k**0.75 + off))
        lower.append((x, ey + eh * 0.8 * k**1.1 + off))
    return upper, lower


def _eyes(img: Image.Image, d: Draw, look: Look, f: _Frame) -> None:
    ey, ew = f.cy + f.b * look.eye_line, f.a * 0.2 * look.eye_size
    eh = ew * {"normal": 0.6, "large": 0.82, "narrow": 0.36, "gentle": 0.55}[look.eye_shape]
    tilt = {"narrow": -0.9, "gentle": 0.8}.get(look.eye_shape, 0.0)
    lw, ri = max(3, round(_W * 0.006)), ew * (0.58 if look.child else 0.5)
    for s in (-1, 1):
        ex = f.cx + s * f.a * 0.42
        upper, lower = _eye_curves(ex, ey, ew, eh, tilt, s)
        ox, oy = math.floor(ex - ew) - 2, math.floor(ey - eh * 2) - 2
        size = (math.ceil(2 * ew) + 5, math.ceil(eh * 4) + 5)
        mask = Image.new("L", size, 0)  # the eye white clips the iris
        ImageDraw.Draw(mask).polygon([(x - ox, y - oy) for x, y in upper + lower[::-1]], fill=255)
        eye = Image.new("RGB", size, (252, 250, 247))
        ed, ix, iy = ImageDraw.Draw(eye), ex - ox, ey - oy + eh * 0.12
        iris = ((1.0, _shade(look.eye_colour, 0.6)), (0.84, look.eye_colour), (0.45, (18, 14, 16)))
        for r, colour in iris:
            ed.ellipse((ix - ri * r, iy - ri * r, ix + ri * r, iy + ri * r), fill=colour)
        for dx, dy, r in ((0.35, -0.35, 0.24), (-0.3, 0.35, 0.12 if look.child else 0.0)):
            cx, cy, rr = ix + ri * dx, iy + ri * dy, ri * r
            ed.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=_WHITE)
        img.paste(eye, (ox, oy), mask)
        d.line(upper, fill=_LINE, width=lw + (2 if look.lashes else 0), joint="curve")
        d.line(lower, fill=_a(_LINE, 90), width=max(2, lw // 2), joint="curve")
        if look.lashes:
            x0, y0 = upper[0] if s < 0 else upper[-1]
            for k in range(3):
                tip = (x0 + s * ew * (0.22 - k * 0.04), y0 - eh * (0.35 + k * 0.15))
                d.line([(x0 - s * k * ew * 0.12, y0 + k * 2), tip], fill=_LINE, width=lw - 1)


def _nose_and_mouth(d: Draw, look: Look, f: _Frame) -> None:
    if look.child:
        d.ellipse(f.box(-0.06, 0.28, 0.06, 0.34), fill=_shade(look.skin, 0.86))
    else:
        nose = [f.p(0.04, 0.1), f.p(0.1, 0.3), f.p(-0.04, 0.33)]
        d.line(nose, fill=_shade(look.skin, 0.74), width=round(_W * 0.005), joint="curve")
    my, lw, cx = f.cy + f.b * 0.55, round(_W * 0.0055), f.cx
    base = look.lips or _shade(look.skin, 0.5)
    line = _mix(base, _LINE, 0.4)
    if look.expression == "grin":
        mw, mh = f.a * 0.36, f.b * 0.2
        d.chord((cx - mw, my - mh, cx + mw, my + mh), 0, 180, fill=(128, 42, 48))
        tongue = (cx - mw * 0.5, my + mh * 0.45, cx + mw * 0.5, my + mh * 1.25)
        d.chord(tongue, 180, 360, fill=(226, 112, 118))
        teeth = (cx - mw * 0.86, my - mh * 0.34, cx + mw * 0.86, my + mh * 0.34)
        d.chord(teeth, 0, 180, fill=(250, 250, 248))
        d.arc((cx - mw, my - mh, cx + mw, my + mh), 0, 180, fill=line, width=lw)
        d.line([(cx - mw, my), (cx + mw, my)], fill=line, width=lw)
        return
    mw = f.a * 0.28
    if look.lips:
        lip = (cx - mw * 0.55, my - f.b * 0.02, cx + mw * 0.55, my + f.b * 0.1)
        d.chord(lip, 0, 180, fill=_a(look.lips, 160))
    if look.expression == "neutral":
        d.line([(cx - mw * 0.7, my), (cx + mw * 0.7, my)], fill=line, width=lw)
    else:
        mh = f.b * (0.1 if look.expression == "smile" else 0.05)
        d.arc((cx - mw, my - mh, cx + mw, my + mh), 15, 165, fill=line, width=lw)


def _accessories(d: Draw, look: Look, f: _Frame) -> None:
    if look.earrings:
        for s in (-1, 1):
            d.ellipse(f.box(s * 0.94, 0.26, s * 1.06, 0.34), fill=(226, 186, 80))
    if look.ribbon:
        u, v = (-0.72 if look.flip else 0.72), -0.9
        for s in (-1, 1):
            bow = [f.p(u, v), f.p(u + s * 0.32, v - 0.17), f.p(u + s * 0.32, v + 0.17)]
            d.polygon(bow, fill=look.accent)
        d.ellipse(f.box(u - 0.07, v - 0.07, u + 0.07, v + 0.07), fill=_shade(look.accent, 0.8))
    if look.glasses:
        ey, lw, frame = f.cy + f.b * look.eye_line, round(_W * 0.006), look.glasses_colour
        gw, gh = max(0.3, 0.27 * look.eye_size) * f.a, 0.22 * f.a
        lens = (255, 255, 255, 40)
        for s in (-1, 1):
            ex = f.cx + s * f.a * 0.42
            box = (ex - gw, ey - gh, ex + gw, ey + gh)
            if look.glasses == "round":
                d.ellipse(box, fill=lens, outline=frame, width=lw)
            else:
                d.rounded_rectangle(box, radius=gh * 0.45, fill=lens, outline=frame, width=lw)
            temple = [(ex + s * gw, ey - gh * 0.3), f.p(s * 1.0, look.eye_line - 0.02)]
            d.line(temple, fill=frame, width=lw)
        bridge = f.a * 0.42 - gw
        d.arc((f.cx - bridge, ey - gh * 0.5, f.cx + bridge, ey + gh * 0.1), 180, 360, frame, lw)


def _encode(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.resize((SIZE, SIZE), Image.Resampling.LANCZOS).save(out, format="PNG")
    return out.getvalue()


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
    "blonde": _rgb("deb86c"), "salt-pepper": _rgb("767476"), "grey": _rgb("c6c6cc"),
    "red": _rgb("964028"), "brown": _rgb("70462a"), "black": _rgb("201c20"),
    "dark-brown": _rgb("402c22"),
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
_EYE_RGB = {"blue": _rgb("4678b4"), "green": _rgb("50825a"), "hazel": _rgb("8c6432")}
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
_SKIN_RGB = {"fair": _rgb("fae2d2"), "tan": _rgb("c48e68")}
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
    "black": _rgb("1c1c1e"), "brown": _rgb("6e4628"), "gold": _rgb("c4a050"), "silver": _rgb("a0a4aa"),
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
    "female": _Style(0.158, 0.212, 0.26, 2.0, 0.009, True, _rgb("ce626e"), 70, 0.29, "scoop",
                     ("long", "medium", "bob", "ponytail", "long")),
    "male": _Style(0.172, 0.222, 0.14, 2.5, 0.016, False, None, 20, 0.37, "collar",
                   ("short", "short", "medium", "short")),
    "neutral": _Style(0.165, 0.216, 0.2, 2.2, 0.012, False, _rgb("c47878"), 45, 0.33, "crew",
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
        eye_colour=_EYE_RGB.get(eye_name) or _mix(_rgb("462e20"), _rgb("281c16"), dark),
        clothes=_rgb("2c3242") if extras["suit"] else _CLOTHES[seed[8] % len(_CLOTHES)],
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
        "skin": _hex(look.skin) if skin_name == "default" else skin_name,
        **extras,
        "from_description": sorted(derived),
        "width": SIZE,
        "height": SIZE,
    }
    return look, meta


def render_partner(description: str, gender: str | None) -> GeneratedImage:
    """Synchronous (CPU-bound): run it in a worker thread."""
    look, meta = partner_look(description, gender)
    return GeneratedImage(data=_encode(_paint(look)), content_type="image/png", meta=meta)


# --- child: measured from both parents -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Tones:
    skin: RGB
    hair: RGB
    eye: RGB
    dominant: RGB

    def meta(self) -> JSONDict:
        return {"skin": _hex(self.skin), "hair": _hex(self.hair), "dominant": _hex(self.dominant)}


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
    return sorted(zip(*bands, strict=True), key=_lum)


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
    skin = _mix(_mix(user.skin, partner.skin, 0.5), _rgb("eeccb2"), 0.35)
    if _lum(skin) < 120:  # a dark or odd photo centre: keep a believable skin tone
        skin = _mix(skin, _rgb("d6aa88"), 0.5)
    hair = _mix(_mix(user.hair, partner.hair, 0.5), _rgb("281e1a"), 0.25)
    if _lum(hair) > _lum(skin) * 0.8:
        hair = _shade(hair, 0.6)
    lengths = {"boy": ("short",), "girl": ("twintails", "bob", "long")}.get(style, ("bob", "short"))
    length = lengths[seed[1] % len(lengths)]
    fringes = {"short": ("spiky", "side")}.get(length, ("straight", "side", "parted"))
    parents = _mix(user.dominant, partner.dominant, 0.5)
    return Look(
        skin=skin,
        hair=hair,
        eye_colour=_mix(_mix(user.eye, partner.eye, 0.5), _rgb("48302a"), 0.5),
        clothes=_mix(_CLOTHES[seed[8] % len(_CLOTHES)], parents, 0.3),
        background=(_mix(user.dominant, _WHITE, 0.55), _mix(partner.dominant, _WHITE, 0.45)),
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


def _medallion(img: Image.Image, parent: Image.Image, centre: Point) -> None:
    """A small soft circle of a parent's picture: the child visibly comes from both."""
    size = round(_W * 0.2)
    face = ImageOps.fit(parent, (size, size), Image.Resampling.LANCZOS, centering=(0.5, 0.4))
    face = Image.blend(face, Image.new("RGB", face.size, _WHITE), 0.2)
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((size * 0.08, size * 0.08, size * 0.92, size * 0.92), fill=215)
    mask = mask.filter(ImageFilter.GaussianBlur(size * 0.05))
    img.paste(face, (round(centre[0] - size / 2), round(centre[1] - size / 2)), mask)


def render_child(
    user_photo: bytes, partner_image: bytes, child: JSONDict, index: int
) -> GeneratedImage:
    """Synchronous (CPU-bound): run it in a worker thread. The child's name is not read."""
    user, partner = _decode(user_photo, "user photo"), _decode(partner_image, "partner image")
    user_tones, partner_tones = _tones(user), _tones(partner)
    style = _child_style(child.get("desired_gender"))
    digest = hashlib.sha256()
    for part in (user_photo, partner_image, f"|{index}|{style}".encode()):
        digest.update(hashlib.sha256(part).digest())
    look = child_look(user_tones, partner_tones, style, digest.digest())
    img = _paint(look)
    _medallion(img, user, (_W * 0.14, _W * 0.14))
    _medallion(img, partner, (_W * 0.86, _W * 0.14))
    meta: JSONDict = {
        "engine": "offline",
        "kind": "child",
        "index": index,
        "style": style,
        "hair_length": look.hair_length,
        "skin": _hex(look.skin),
        "hair_colour": _hex(look.hair),
        "eye_colour": _hex(look.eye_colour),
        "parents": {"user": user_tones.meta(), "partner": partner_tones.meta()},
        "width": SIZE,
        "height": SIZE,
    }
    return GeneratedImage(data=_encode(img), content_type="image/png", meta=meta)


class OfflineImageBrain:
    """The `ImageBrain` without a model: stateless; Pillow runs in a worker thread."""

    async def partner_image(self, *, description: str, gender: str | None) -> GeneratedImage:
        return await anyio.to_thread.run_sync(render_partner, description, gender)

    async def child_image(
        self, *, user_photo: bytes, partner_image: bytes, child: JSONDict, index: int
    ) -> GeneratedImage:
        args = (user_photo, partner_image, dict(child), index)
        return await anyio.to_thread.run_sync(render_child, *args)

    async def aclose(self) -> None:
        return None
