"""Offline images, the painter: portraits drawn with Pillow from a `Look`, deterministic.

Drawing happens at 2x and is downsampled (cheap anti-aliasing); PNG output, identical bytes
for identical inputs. Shapes are in face units: (0, 0) the face centre, ±1 its edges.
Reading a description or measuring the parents into a `Look` is `images.py`'s job.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageOps

SIZE = 512
CANVAS = SIZE * 2  # the drawing canvas
RGB = tuple[int, int, int]
Point = tuple[float, float]
Draw = ImageDraw.ImageDraw


# --- small helpers ------------------------------------------------------------------------
def rgb(spec: str) -> RGB:
    return (int(spec[0:2], 16), int(spec[2:4], 16), int(spec[4:6], 16))


def _pts(spec: str) -> tuple[Point, ...]:
    return tuple((float(u), float(v)) for u, v in (p.split(",") for p in spec.split()))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


def shade(c: RGB, f: float) -> RGB:
    r, g, b = (min(255, round(x * f)) for x in c)
    return (r, g, b)


def lum(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def to_hex(c: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c)


def _a(c: RGB, alpha: int) -> tuple[int, int, int, int]:
    return (*c, alpha)


_LINE, WHITE = rgb("3a2826"), rgb("ffffff")


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
def paint(look: Look) -> Image.Image:
    mask = Image.linear_gradient("L").resize((CANVAS, CANVAS))
    top, bottom = (Image.new("RGB", (CANVAS, CANVAS), c) for c in look.background)
    img = Image.composite(bottom, top, mask)
    d = ImageDraw.Draw(img, "RGBA")
    f = _Frame(CANVAS / 2, CANVAS * look.head_y, CANVAS * look.face_w, CANVAS * look.face_h)
    d.ellipse(f.box(-2.3, -1.9, 2.3, 2.1), fill=(255, 255, 255, 45))
    _back_hair(d, look, f)
    _body(d, look, f)
    _hair_cap(d, look, f)
    for s in (-1, 1):
        d.ellipse(f.box(s * 0.82, -0.14, s * 1.14, 0.26), fill=shade(look.skin, 0.93))
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
    top, sw, skin = f.cy + f.b * (1.08 if look.child else 1.22), CANVAS * look.shoulders, look.skin
    neck = 0.33 if look.lashes else 0.4
    d.rectangle((*f.p(-neck, 0.4), f.cx + f.a * neck, top + f.b * 0.2), fill=shade(skin, 0.88))
    d.chord(f.box(-neck, 0.62, neck, 1.12), 0, 180, fill=shade(skin, 0.78))  # under the chin
    d.rounded_rectangle(
        (f.cx - sw, top, f.cx + sw, CANVAS + sw), radius=sw * 0.55, fill=look.clothes
    )
    if look.neckline == "suit":
        d.polygon(f.poly(_SHAPES["shirt"]), fill=(245, 245, 242))
        d.polygon(f.poly(_SHAPES["tie"]), fill=look.accent)
        for s in (-1, 1):
            d.polygon(f.poly(_SHAPES["lapel"], s), fill=shade(look.clothes, 0.8))
    elif look.neckline == "collar":
        d.polygon(f.poly(_SHAPES["v_neck"]), fill=shade(skin, 0.88))
        for s in (-1, 1):
            d.polygon(f.poly(_SHAPES["collar"], s), fill=(246, 246, 244))
    else:
        v = (top - f.cy) / f.b
        box = f.box(-0.55, v - 0.25, 0.55, v + (0.45 if look.neckline == "scoop" else 0.22))
        d.chord(box, 0, 180, fill=shade(skin, 0.88))
        d.arc(box, 0, 180, fill=shade(look.clothes, 0.75), width=round(CANVAS * 0.008))


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
        shine = _a(mix(look.hair, WHITE, 0.45), 70)
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
            d.ellipse(f.box(u - 0.025, v - 0.02, u + 0.025, v + 0.02), fill=shade(look.skin, 0.72))


def _beard(d: Draw, look: Look, f: _Frame) -> None:
    if look.beard is None:
        return
    colour, stubble = shade(look.hair, 0.9), look.beard == "stubble"
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
        colour = mix(look.hair, _LINE, 0.35)
        d.line(pts, fill=colour, width=round(CANVAS * look.brow), joint="curve")


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
    lw, ri = max(3, round(CANVAS * 0.006)), ew * (0.58 if look.child else 0.5)
    for s in (-1, 1):
        ex = f.cx + s * f.a * 0.42
        upper, lower = _eye_curves(ex, ey, ew, eh, tilt, s)
        ox, oy = math.floor(ex - ew) - 2, math.floor(ey - eh * 2) - 2
        size = (math.ceil(2 * ew) + 5, math.ceil(eh * 4) + 5)
        mask = Image.new("L", size, 0)  # the eye white clips the iris
        ImageDraw.Draw(mask).polygon([(x - ox, y - oy) for x, y in upper + lower[::-1]], fill=255)
        eye = Image.new("RGB", size, (252, 250, 247))
        ed, ix, iy = ImageDraw.Draw(eye), ex - ox, ey - oy + eh * 0.12
        iris = ((1.0, shade(look.eye_colour, 0.6)), (0.84, look.eye_colour), (0.45, (18, 14, 16)))
        for r, colour in iris:
            ed.ellipse((ix - ri * r, iy - ri * r, ix + ri * r, iy + ri * r), fill=colour)
        for dx, dy, r in ((0.35, -0.35, 0.24), (-0.3, 0.35, 0.12 if look.child else 0.0)):
            cx, cy, rr = ix + ri * dx, iy + ri * dy, ri * r
            ed.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=WHITE)
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
        d.ellipse(f.box(-0.06, 0.28, 0.06, 0.34), fill=shade(look.skin, 0.86))
    else:
        nose = [f.p(0.04, 0.1), f.p(0.1, 0.3), f.p(-0.04, 0.33)]
        d.line(nose, fill=shade(look.skin, 0.74), width=round(CANVAS * 0.005), joint="curve")
    my, lw, cx = f.cy + f.b * 0.55, round(CANVAS * 0.0055), f.cx
    base = look.lips or shade(look.skin, 0.5)
    line = mix(base, _LINE, 0.4)
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
        d.ellipse(f.box(u - 0.07, v - 0.07, u + 0.07, v + 0.07), fill=shade(look.accent, 0.8))
    if look.glasses:
        ey, lw, frame = f.cy + f.b * look.eye_line, round(CANVAS * 0.006), look.glasses_colour
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


def encode_png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.resize((SIZE, SIZE), Image.Resampling.LANCZOS).save(out, format="PNG")
    return out.getvalue()


def medallion(img: Image.Image, parent: Image.Image, centre: Point) -> None:
    """A small soft circle of a parent's picture: the child visibly comes from both."""
    size = round(CANVAS * 0.2)
    face = ImageOps.fit(parent, (size, size), Image.Resampling.LANCZOS, centering=(0.5, 0.4))
    face = Image.blend(face, Image.new("RGB", face.size, WHITE), 0.2)
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((size * 0.08, size * 0.08, size * 0.92, size * 0.92), fill=215)
    mask = mask.filter(ImageFilter.GaussianBlur(size * 0.05))
    img.paste(face, (round(centre[0] - size / 2), round(centre[1] - size / 2)), mask)
