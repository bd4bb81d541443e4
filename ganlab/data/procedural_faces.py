"""Procedural, labelled cartoon faces rendered on the fly with numpy.

What it is
    A deterministic generator of small RGB face images in the spirit of aligned
    CelebA crops: one head, roughly centred and filling about 60% of the frame,
    with hair, eyes, brows, nose, mouth and optional accessories over a flat or
    gradient background. Every image comes with CelebA-style binary attribute
    labels that are *visibly* true in the pixels.

Why
    * No download: the library's default experiment (a DCGAN that should learn
      face-like images in minutes on a CPU) and the tests of on-disk data layouts
      need a face data set that is always available.
    * Deterministic: face ``i`` depends only on ``(seed, i)``, so a data set can be
      rendered in any chunking, order or process and still be byte-identical.
    * Labelled: attributes drive the drawing, so conditional models and attribute
      classifiers have real signal to learn.

How
    Shapes are signed-distance fields evaluated on a per-face coordinate grid
    (jittered in position, scale and rotation) and composited back to front with
    a linear coverage ramp one pixel wide, which anti-aliases every edge at any
    resolution. Left/right symmetric parts (eyes, brows, ears, lenses) are
    evaluated once on ``|x|``; small features are evaluated only inside windows
    bounding them, and rare ones only for the faces that have them. All work is
    vectorised over chunks of faces (about 1 s for 5,000 faces at 64 px).

Attributes (``ATTRIBUTE_NAMES``, CelebA order; marginal rates in
``ATTRIBUTE_PROBS``)
    Bald, Bangs, Black_Hair, Blond_Hair, Brown_Hair, Bushy_Eyebrows, Eyeglasses,
    Gray_Hair, Long_Hair, Male, Mouth_Slightly_Open, Mustache, Narrow_Eyes,
    Oval_Face, Pale_Skin, Rosy_Cheeks, Smiling, Wearing_Hat, Wearing_Lipstick.

    ``Long_Hair`` is not a CelebA attribute. Hair-colour attributes are mutually
    exclusive and all zero for bald faces and for red/auburn hair. ``Male`` is
    shown through correlated cues as in photographs: mostly short hair, broader
    jaw, thicker brows, no lipstick, possible stubble or moustache.

Example
    >>> images, attributes = render_faces(16, resolution=64, seed=0)
    >>> images.shape, images.dtype, attributes.shape
    ((16, 3, 64, 64), dtype('uint8'), (16, 19))
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ATTRIBUTE_NAMES", "ATTRIBUTE_PROBS", "render_faces", "sample_attributes"]

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "Bald",
    "Bangs",
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Eyeglasses",
    "Gray_Hair",
    "Long_Hair",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "Oval_Face",
    "Pale_Skin",
    "Rosy_Cheeks",
    "Smiling",
    "Wearing_Hat",
    "Wearing_Lipstick",
)

# --- conditional probabilities that drive sampling -------------------------------
P_MALE = 0.42
P_BALD_GIVEN_MALE = 0.10
P_HAT = 0.05  # overall; hats are never drawn on bald heads
P_LONG_GIVEN_FEMALE = 0.80  # given not bald (females are never bald)
P_LONG_GIVEN_MALE = 0.08  # given not bald
P_BANGS_GIVEN_HAIR = 0.16
# Hair colour given hair; the remainder (red/auburn) carries no colour label.
HAIR_COLOUR_PROBS = {"Black_Hair": 0.30, "Brown_Hair": 0.28, "Blond_Hair": 0.20, "Gray_Hair": 0.06}
P_SMILING = 0.48
P_OPEN_GIVEN_SMILING = 0.70
P_OPEN_GIVEN_NEUTRAL = 0.25
P_EYEGLASSES = 0.12
P_SUNGLASSES_GIVEN_GLASSES = 0.25
P_PALE = 0.06
P_BUSHY_GIVEN_MALE = 0.30
P_BUSHY_GIVEN_FEMALE = 0.06
P_OVAL = 0.28
P_NARROW_EYES = 0.12
P_LIPSTICK_GIVEN_FEMALE = 0.70
P_MUSTACHE_GIVEN_MALE = 0.12
P_STUBBLE_GIVEN_MALE = 0.35  # unlabelled variation
P_ROSY = 0.08


def _marginals() -> dict[str, float]:
    male, female = P_MALE, 1.0 - P_MALE
    bald = male * P_BALD_GIVEN_MALE
    hair = 1.0 - bald
    long_hair = female * P_LONG_GIVEN_FEMALE + male * (1 - P_BALD_GIVEN_MALE) * P_LONG_GIVEN_MALE
    probs = {
        "Bald": bald,
        "Bangs": hair * P_BANGS_GIVEN_HAIR,
        "Bushy_Eyebrows": male * P_BUSHY_GIVEN_MALE + female * P_BUSHY_GIVEN_FEMALE,
        "Eyeglasses": P_EYEGLASSES,
        "Long_Hair": long_hair,
        "Male": male,
        "Mouth_Slightly_Open": P_SMILING * P_OPEN_GIVEN_SMILING
        + (1 - P_SMILING) * P_OPEN_GIVEN_NEUTRAL,
        "Mustache": male * P_MUSTACHE_GIVEN_MALE,
        "Narrow_Eyes": P_NARROW_EYES,
        "Oval_Face": P_OVAL,
        "Pale_Skin": P_PALE,
        "Rosy_Cheeks": P_ROSY,
        "Smiling": P_SMILING,
        "Wearing_Hat": P_HAT,
        "Wearing_Lipstick": female * P_LIPSTICK_GIVEN_FEMALE,
    }
    probs.update({name: hair * p for name, p in HAIR_COLOUR_PROBS.items()})
    return {name: round(probs[name], 4) for name in ATTRIBUTE_NAMES}


#: Expected frequency of each attribute (exact marginals of the sampler).
ATTRIBUTE_PROBS: dict[str, float] = _marginals()

# --- palettes (linear-ish RGB in [0, 1]) -----------------------------------------
_SKIN_PALETTE = np.array(
    [
        [0.99, 0.90, 0.84],  # pale
        [0.96, 0.80, 0.69],
        [0.88, 0.68, 0.54],
        [0.76, 0.56, 0.40],
        [0.60, 0.42, 0.29],
        [0.42, 0.28, 0.19],  # deep
    ],
    dtype=np.float32,
)
_HAIR_PALETTE = np.array(
    [
        [0.09, 0.08, 0.08],  # black
        [0.36, 0.23, 0.13],  # brown
        [0.88, 0.74, 0.44],  # blond
        [0.72, 0.72, 0.72],  # gray
        [0.58, 0.24, 0.12],  # red / auburn (unlabelled)
    ],
    dtype=np.float32,
)
_IRIS_PALETTE = np.array(
    [
        [0.30, 0.18, 0.08],  # brown
        [0.16, 0.10, 0.06],  # dark brown
        [0.25, 0.45, 0.75],  # blue
        [0.30, 0.50, 0.30],  # green
        [0.50, 0.40, 0.20],  # hazel
        [0.45, 0.52, 0.58],  # gray
    ],
    dtype=np.float32,
)
_FRAME_PALETTE = np.array(
    [[0.05, 0.05, 0.05], [0.30, 0.18, 0.10], [0.55, 0.55, 0.58], [0.70, 0.55, 0.20]],
    dtype=np.float32,
)
_N_UNIFORMS = 128  # per-face random numbers; slots are consumed in a fixed order


# --- per-face parameters -----------------------------------------------------------
@dataclasses.dataclass
class FaceParams:
    """Per-face drawing parameters; every field is an array with one row per face.

    Lengths are in face-local units (the head ellipse is about 0.5 wide and 0.65
    tall, half-axes); colours are RGB rows in [0, 1]; flags are booleans.
    """

    attributes: np.ndarray  # (n, K) int8
    tx: np.ndarray
    ty: np.ndarray
    rot: np.ndarray
    scale: np.ndarray
    light: np.ndarray
    male: np.ndarray
    face_a: np.ndarray
    face_b: np.ndarray
    jaw: np.ndarray
    skin: np.ndarray  # (n, 3)
    bald: np.ndarray
    hat: np.ndarray
    long_hair: np.ndarray
    bangs: np.ndarray
    hair: np.ndarray  # (n, 3)
    brow_colour: np.ndarray  # (n, 3)
    hair_margin: np.ndarray
    hair_top: np.ndarray
    hairline: np.ndarray
    hairline_curve: np.ndarray
    hair_end: np.ndarray
    strand_x: np.ndarray
    hair_phase: np.ndarray
    hair_part: np.ndarray
    eye_x: np.ndarray
    eye_y: np.ndarray
    eye_rx: np.ndarray
    eye_ry: np.ndarray
    iris_r: np.ndarray
    iris: np.ndarray  # (n, 3)
    gaze_x: np.ndarray
    gaze_y: np.ndarray
    lash: np.ndarray
    brow_x: np.ndarray
    brow_y: np.ndarray
    brow_len: np.ndarray
    brow_thick: np.ndarray
    brow_angle: np.ndarray
    brow_arch: np.ndarray
    nose_y: np.ndarray
    nose_w: np.ndarray
    mouth_y: np.ndarray
    mouth_w: np.ndarray
    mouth_lift: np.ndarray
    open_upper: np.ndarray
    open_lower: np.ndarray
    lip_upper: np.ndarray
    lip_lower: np.ndarray
    lip_colour: np.ndarray  # (n, 3)
    glasses: np.ndarray
    sunglasses: np.ndarray
    lens_round: np.ndarray
    lens_w: np.ndarray
    lens_h: np.ndarray
    frame_thick: np.ndarray
    frame_colour: np.ndarray  # (n, 3)
    mustache: np.ndarray
    stubble: np.ndarray
    rosy: np.ndarray
    hat_colour: np.ndarray  # (n, 3)
    hat_brim: np.ndarray
    bg0: np.ndarray  # (n, 3)
    bg1: np.ndarray  # (n, 3)
    cloth: np.ndarray  # (n, 3)

    def take(self, idx: np.ndarray) -> FaceParams:
        """Parameters of the faces selected by ``idx`` (index array or mask)."""
        return FaceParams(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})


def _uniforms(seed: int, indices: np.ndarray) -> np.ndarray:
    """(n, _N_UNIFORMS) float64 in [0, 1); row i depends only on (seed, indices[i])."""
    rows = [np.random.default_rng([seed, int(i)]).random(_N_UNIFORMS) for i in indices]
    return np.stack(rows) if rows else np.zeros((0, _N_UNIFORMS))


def _lerp(lo: float, hi: float, u: np.ndarray) -> np.ndarray:
    return (lo + (hi - lo) * u).astype(np.float32)


def _palette(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp through ``palette`` rows at positions t in [0, 1]."""
    pos = np.clip(t, 0.0, 1.0) * (len(palette) - 1)
    i0 = np.minimum(pos.astype(int), len(palette) - 2)
    w = (pos - i0)[:, None].astype(np.float32)
    return palette[i0] * (1 - w) + palette[i0 + 1] * w


def _random_colour(u3: np.ndarray, lo: float, hi: float, grey_mix: float) -> np.ndarray:
    rgb = lo + (hi - lo) * u3.astype(np.float32)
    return rgb * (1 - grey_mix) + rgb.mean(axis=1, keepdims=True) * grey_mix


def _sample_flags(u) -> dict[str, np.ndarray]:
    """Binary choices; attribute labels are derived from these."""
    male = u() < P_MALE
    f = {"male": male, "oval": u() < P_OVAL}
    f["bald"] = bald = male & (u() < P_BALD_GIVEN_MALE)
    f["hat"] = ~bald & (u() < P_HAT / (1 - P_MALE * P_BALD_GIVEN_MALE))
    f["long_hair"] = ~bald & (u() < np.where(male, P_LONG_GIVEN_MALE, P_LONG_GIVEN_FEMALE))
    f["bangs"] = ~bald & (u() < P_BANGS_GIVEN_HAIR)
    cum = np.cumsum(list(HAIR_COLOUR_PROBS.values()))
    f["hair_cat"] = np.searchsorted(cum, u(), side="right")  # 0..3 labelled, 4 = red
    f["smiling"] = smiling = u() < P_SMILING
    f["mouth_open"] = u() < np.where(smiling, P_OPEN_GIVEN_SMILING, P_OPEN_GIVEN_NEUTRAL)
    f["glasses"] = glasses = u() < P_EYEGLASSES
    f["sunglasses"] = glasses & (u() < P_SUNGLASSES_GIVEN_GLASSES)
    f["pale"] = u() < P_PALE
    f["bushy"] = u() < np.where(male, P_BUSHY_GIVEN_MALE, P_BUSHY_GIVEN_FEMALE)
    f["narrow"] = u() < P_NARROW_EYES
    f["lipstick"] = ~male & (u() < P_LIPSTICK_GIVEN_FEMALE)
    f["mustache"] = male & (u() < P_MUSTACHE_GIVEN_MALE)
    f["stubble"] = male & (u() < P_STUBBLE_GIVEN_MALE)
    f["rosy"] = u() < P_ROSY
    return f


def _attributes(f: dict[str, np.ndarray]) -> np.ndarray:
    hair, cat = ~f["bald"], f["hair_cat"]
    flags = {
        "Bald": f["bald"],
        "Bangs": f["bangs"],
        "Black_Hair": hair & (cat == 0),
        "Brown_Hair": hair & (cat == 1),
        "Blond_Hair": hair & (cat == 2),
        "Gray_Hair": hair & (cat == 3),
        "Bushy_Eyebrows": f["bushy"],
        "Eyeglasses": f["glasses"],
        "Long_Hair": f["long_hair"],
        "Male": f["male"],
        "Mouth_Slightly_Open": f["mouth_open"],
        "Mustache": f["mustache"],
        "Narrow_Eyes": f["narrow"],
        "Oval_Face": f["oval"],
        "Pale_Skin": f["pale"],
        "Rosy_Cheeks": f["rosy"],
        "Smiling": f["smiling"],
        "Wearing_Hat": f["hat"],
        "Wearing_Lipstick": f["lipstick"],
    }
    n = len(hair)
    return np.stack([flags[k] for k in ATTRIBUTE_NAMES], axis=1).reshape(n, -1).astype(np.int8)


def _sample_head(u, f: dict) -> None:
    male, oval = f["male"], f["oval"]
    face_a = np.where(male, _lerp(0.50, 0.56, u()), _lerp(0.46, 0.52, u()))
    f["face_a"] = face_a = np.where(oval, face_a * 0.90, face_a)
    f["face_b"] = face_a * np.where(oval, _lerp(1.40, 1.50, u()), _lerp(1.18, 1.28, u()))
    f["jaw"] = np.where(male, _lerp(0.05, 0.25, u()), _lerp(0.25, 0.50, u()))
    # Skin: pale faces sit at the very light end of the ramp, others skew lighter.
    tone = np.where(f["pale"], 0.07 * u(), 0.16 + 0.84 * u() ** 1.4)
    f["skin"] = _palette(_SKIN_PALETTE, tone) * (1 + 0.04 * (_u3(u) - 0.5))
    f["light"] = _lerp(-1.0, 1.0, u())
    f["tx"] = _lerp(-0.04, 0.04, u())
    f["ty"] = _lerp(0.0, 0.08, u())
    f["rot"] = _lerp(-0.10, 0.10, u())
    f["scale"] = _lerp(1.0, 1.12, u())


def _sample_hair(u, f: dict) -> None:
    cat, male, long_hair, face_b = f["hair_cat"], f["male"], f["long_hair"], f["face_b"]
    hair = _HAIR_PALETTE[cat] * _lerp(0.85, 1.15, u())[:, None]
    f["hair"] = hair = np.clip(hair + 0.04 * (_u3(u) - 0.5), 0, 1)
    brow = np.where(f["bald"][:, None], 0.25 * f["skin"], hair * 0.85)
    f["brow_colour"] = np.where((cat == 2)[:, None], hair * 0.55, brow)
    f["hair_margin"] = np.where(long_hair, _lerp(0.07, 0.13, u()), _lerp(0.03, 0.07, u()))
    f["hair_top"] = _lerp(0.0, 0.06, u())
    hairline = np.where(male, _lerp(-0.78, -0.62, u()), _lerp(-0.74, -0.62, u()))
    f["hairline"] = face_b * hairline
    f["hairline_curve"] = _lerp(0.2, 0.7, u())
    f["hair_part"] = _lerp(-0.15, 0.15, u())
    f["hair_end"] = _lerp(0.80, 1.25, u())
    f["strand_x"] = f["face_a"] * _lerp(0.74, 0.86, u())
    f["hair_phase"] = _lerp(0.0, 6.283, u())


def _sample_eyes(u, f: dict) -> None:
    male = f["male"]
    f["eye_y"] = eye_y = f["face_b"] * _lerp(-0.18, -0.10, u())
    f["eye_x"] = eye_x = f["face_a"] * _lerp(0.36, 0.44, u())
    f["eye_rx"] = eye_rx = _lerp(0.070, 0.090, u())
    eye_ry = eye_rx * _lerp(0.50, 0.66, u()) * np.where(f["narrow"], 0.55, 1.0)
    f["eye_ry"] = eye_ry * np.where(f["smiling"], 0.85, 1.0)
    f["iris_r"] = eye_rx * _lerp(0.46, 0.56, u())
    f["iris"] = _pick(_IRIS_PALETTE, u())
    f["gaze_x"] = _lerp(-0.018, 0.018, u())
    f["gaze_y"] = _lerp(-0.008, 0.008, u())
    f["lash"] = np.where(male, _lerp(0.008, 0.011, u()), _lerp(0.011, 0.016, u()))
    f["brow_x"] = eye_x + _lerp(-0.01, 0.015, u())
    f["brow_y"] = eye_y - _lerp(0.085, 0.11, u())
    f["brow_len"] = eye_rx * _lerp(1.05, 1.35, u())
    thick = np.where(male, _lerp(0.012, 0.017, u()), _lerp(0.008, 0.012, u()))
    f["brow_thick"] = np.where(f["bushy"], _lerp(0.022, 0.030, u()), thick)
    f["brow_angle"] = _lerp(-0.25, 0.2, u())
    f["brow_arch"] = _lerp(0.5, 3.0, u())


def _sample_mouth(u, f: dict) -> None:
    smiling, face_b = f["smiling"], f["face_b"]
    f["nose_y"] = face_b * _lerp(0.18, 0.26, u())
    f["nose_w"] = _lerp(0.030, 0.048, u())
    f["mouth_y"] = face_b * _lerp(0.46, 0.52, u())
    f["mouth_w"] = _lerp(0.12, 0.16, u()) * np.where(smiling, 1.15, 1.0)
    f["mouth_lift"] = np.where(smiling, _lerp(0.035, 0.06, u()), _lerp(-0.012, 0.008, u()))
    open_lower = np.where(smiling, _lerp(0.05, 0.08, u()), _lerp(0.035, 0.06, u()))
    f["open_lower"] = np.where(f["mouth_open"], open_lower, 0)
    f["open_upper"] = np.where(f["mouth_open"], _lerp(0.0, 0.012, u()), 0)
    f["lip_upper"] = _lerp(0.010, 0.018, u())
    f["lip_lower"] = _lerp(0.014, 0.024, u())
    natural = f["skin"] * np.float32([0.82, 0.58, 0.56])
    red = _lerp(0.0, 1.0, u())[:, None]
    lipstick = (1 - red) * np.float32([0.72, 0.10, 0.22]) + red * np.float32([0.85, 0.16, 0.16])
    f["lip_colour"] = np.where(f["lipstick"][:, None], lipstick, natural)


def _sample_accessories(u, f: dict) -> None:
    f["lens_round"] = u() < 0.4
    f["lens_w"] = lens_w = f["eye_rx"] * _lerp(1.45, 1.75, u())
    f["lens_h"] = lens_w * _lerp(0.72, 0.92, u())
    f["frame_thick"] = _lerp(0.010, 0.018, u())
    f["frame_colour"] = _pick(_FRAME_PALETTE, u())
    f["hat_colour"] = _random_colour(_u3(u), 0.1, 0.9, 0.2)
    f["hat_brim"] = f["hairline"] + _lerp(-0.05, 0.02, u())
    f["bg0"] = bg0 = _random_colour(_u3(u), 0.15, 0.95, 0.35)
    flat = (u() < 0.5)[:, None]
    f["bg1"] = np.where(flat, bg0, _random_colour(_u3(u), 0.15, 0.95, 0.35))
    f["cloth"] = _random_colour(_u3(u), 0.05, 0.85, 0.25)


def _u3(u) -> np.ndarray:
    return np.stack([u(), u(), u()], axis=1).astype(np.float32)


def _pick(palette: np.ndarray, u: np.ndarray) -> np.ndarray:
    return palette[np.minimum((u * len(palette)).astype(int), len(palette) - 1)]


def _sample_params(seed: int, indices: np.ndarray) -> FaceParams:
    """Draw the parameters of faces ``indices``; face i uses only ``(seed, indices[i])``."""
    columns = iter(_uniforms(seed, indices).T)

    def u() -> np.ndarray:
        return next(columns)

    f = _sample_flags(u)
    for sampler in (_sample_head, _sample_hair, _sample_eyes, _sample_mouth, _sample_accessories):
        sampler(u, f)
    fields = {k: np.asarray(f[k], dtype=np.float32) for k in _FLOAT_FIELDS}
    fields.update({k: np.asarray(f[k], dtype=bool) for k in _BOOL_FIELDS})
    return FaceParams(attributes=_attributes(f), **fields)


_BOOL_FIELDS = frozenset(
    {"male", "bald", "hat", "long_hair", "bangs", "glasses", "sunglasses", "lens_round"}
    | {"mustache", "stubble", "rosy"}
)
_FLOAT_FIELDS = frozenset(
    f.name for f in dataclasses.fields(FaceParams) if f.name not in _BOOL_FIELDS | {"attributes"}
)


# --- signed distances and compositing ------------------------------------------------
def _c(v: np.ndarray) -> np.ndarray:
    """Per-face scalar -> (n, 1, 1) for broadcasting against (n, H, W) grids."""
    return v[:, None, None]


def _ellipse(x: np.ndarray, y: np.ndarray, a, b) -> np.ndarray:
    """Signed distance to an axis-aligned ellipse, first-order (exact for circles)."""
    xa, yb = x / a, y / b
    q = np.sqrt(xa * xa + yb * yb)
    ga, gb = xa / a, yb / b
    g = np.sqrt(ga * ga + gb * gb) + 1e-6
    return (q - 1.0) * q / g


def _circle(x: np.ndarray, y: np.ndarray, r) -> np.ndarray:
    return np.sqrt(x * x + y * y) - r


def _box(x: np.ndarray, y: np.ndarray, hx, hy, radius=0.0) -> np.ndarray:
    """Signed distance to a (rounded) box centred at the origin with half-sizes hx, hy."""
    dx = np.abs(x) - (hx - radius)
    dy = np.abs(y) - (hy - radius)
    ox, oy = np.maximum(dx, 0), np.maximum(dy, 0)
    return np.sqrt(ox * ox + oy * oy) + np.minimum(np.maximum(dx, dy), 0) - radius


def _cover(d: np.ndarray, pw) -> np.ndarray:
    """Coverage from signed distance: linear ramp one pixel (``pw``) wide."""
    a = 0.5 - d / pw
    np.clip(a, 0.0, 1.0, out=a)
    return a


def _over(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """In place: ``img = img * (1 - alpha) + colour * alpha``.

    img (n, 3, H, W); alpha (n, H, W); colour (n, 3) or (n, 3, H, W).
    """
    if colour.ndim == 2:
        colour = colour[:, :, None, None]
    delta = colour - img
    delta *= alpha[:, None]
    img += delta


# --- canvases: crops and face subsets of a chunk --------------------------------------
@dataclasses.dataclass
class _Canvas:
    """Pixels being drawn plus their face-local coordinates (x right, y down).

    ``img`` is a view of the chunk (crops) or a copy (face subsets, see
    :func:`_subset`). ``u``/``v`` are the image-space centres of its columns/rows.
    """

    img: np.ndarray  # (n, 3, h, w) float32
    x: np.ndarray  # (n, h, w)
    y: np.ndarray  # (n, h, w)
    pw: np.ndarray  # (n, 1, 1): one pixel in face-local units
    p: FaceParams
    u: np.ndarray  # (w,)
    v: np.ndarray  # (h,)
    res: int  # resolution of the full image


_CROP = True  # draw local features only inside their bounding windows (speed)


def _crop(cv: _Canvas, hx, y0, y1, pad: float = 1.5) -> _Canvas | None:
    """Sub-canvas covering the face-local rectangles ``|x| <= hx, y0 <= y <= y1``
    of every face (plus ``pad`` pixels), or None when it is off-image."""
    if not _CROP:
        return cv
    p = cv.p
    cos, sin, s = np.cos(p.rot)[:, None], np.sin(p.rot)[:, None], p.scale[:, None]
    hx, y0, y1 = (np.broadcast_to(v, p.rot.shape)[:, None] for v in (hx, y0, y1))
    xs = np.concatenate([-hx, hx, -hx, hx], axis=1)
    ys = np.concatenate([y0, y0, y1, y1], axis=1)
    us = p.tx[:, None] + s * (cos * xs - sin * ys)
    vs = p.ty[:, None] + s * (sin * xs + cos * ys)
    margin = pad * 2.0 / cv.res
    cols = slice(*np.searchsorted(cv.u, [us.min() - margin, us.max() + margin]))
    rows = slice(*np.searchsorted(cv.v, [vs.min() - margin, vs.max() + margin]))
    if cols.start >= cols.stop or rows.start >= rows.stop:
        return None
    return _Canvas(
        cv.img[:, :, rows, cols], cv.x[:, rows, cols], cv.y[:, rows, cols], cv.pw, p,
        cv.u[cols], cv.v[rows], cv.res,
    )  # fmt: skip


def _subset(cv: _Canvas | None, mask: np.ndarray) -> tuple[_Canvas | None, np.ndarray]:
    """Copy of the canvas restricted to faces where ``mask`` holds (write back with
    :func:`_commit`)."""
    idx = np.nonzero(mask)[0]
    if cv is None or len(idx) == 0:
        return None, idx
    sub = _Canvas(
        cv.img[idx], cv.x[idx], cv.y[idx], cv.pw[idx], cv.p.take(idx), cv.u, cv.v, cv.res
    )
    return sub, idx


def _commit(cv: _Canvas, sub: _Canvas, idx: np.ndarray) -> None:
    cv.img[idx] = sub.img


# --- layers (back to front) -----------------------------------------------------------
def _hair_texture(p: FaceParams, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hair colour with soft strand shading, (n, 3, H, W)."""
    strands = 1.0 + 0.06 * np.sin(34.0 * x + 8.0 * y * x + _c(p.hair_phase))
    return p.hair[:, :, None, None] * strands[:, None]


def _draw_background(cv: _Canvas) -> None:
    t = ((cv.v + 1.0) * 0.5)[None, None, :, None]  # vertical position in [0, 1]
    p = cv.p
    cv.img[:] = p.bg0[:, :, None, None] + (p.bg1 - p.bg0)[:, :, None, None] * t


def _long_hair_sd(p: FaceParams, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a, b, m = _c(p.face_a), _c(p.face_b), _c(p.hair_margin)
    head = _ellipse(x, y + _c(p.hair_top), a + m, b + m)
    half_len = 0.5 * _c(p.hair_end)
    drape = _box(x, y - half_len, a + m + 0.02, half_len, 0.08)
    return np.minimum(head, drape)


def _draw_long_hair_back(cv: _Canvas) -> None:
    sub, idx = _subset(cv, cv.p.long_hair)
    if sub is None:
        return
    alpha = _cover(_long_hair_sd(sub.p, sub.x, sub.y), sub.pw)
    _over(sub.img, alpha, _hair_texture(sub.p, sub.x, sub.y) * 0.8)
    _commit(cv, sub, idx)


def _draw_body(cv: _Canvas) -> None:
    p = cv.p
    cv = _crop(cv, p.face_a + 0.56, p.face_b - 0.26, p.face_b + 1.05)
    if cv is None:
        return
    x, y, pw = cv.x, cv.y, cv.pw
    a, b = _c(p.face_a), _c(p.face_b)
    neck = _box(x, y - b - 0.1, a * 0.5, 0.35, 0.05)
    shade = 1.0 - 0.35 * np.clip((b + 0.15 - y) * 4.0, 0.0, 1.0)  # shadow under the chin
    _over(cv.img, _cover(neck, pw), p.skin[:, :, None, None] * 0.88 * shade[:, None])
    shoulders = _ellipse(x, y - b - 0.62, a + 0.55, 0.42)
    _over(cv.img, _cover(shoulders, pw), p.cloth)
    collar = _ellipse(x, y - b - 0.2, a * 0.55, 0.1)
    _over(cv.img, _cover(np.maximum(collar, -shoulders), pw), p.skin * 0.85)


def _draw_ears(cv: _Canvas) -> None:
    p = cv.p
    centre = p.eye_y + 0.06
    cv = _crop(cv, p.face_a * 0.97 + 0.075, centre - 0.12, centre + 0.12)
    if cv is None:
        return
    ear = _ellipse(np.abs(cv.x) - _c(p.face_a) * 0.97, cv.y - _c(centre), 0.065, 0.11)
    _over(cv.img, _cover(ear, cv.pw), p.skin * 0.92)


def _face_sd(p: FaceParams, x: np.ndarray, y: np.ndarray):
    a, b = _c(p.face_a), _c(p.face_b)
    w = np.clip(y / b, 0.0, 1.0)
    xw = x * (1.0 + _c(p.jaw) * w * w)
    return _ellipse(xw, y, a, b)


def _draw_face(cv: _Canvas) -> None:
    """Skin with soft 3-D shading, and stubble on some men."""
    p = cv.p
    cv = _crop(cv, p.face_a + 0.01, -p.face_b - 0.01, p.face_b + 0.01)
    if cv is None:
        return
    x, y = cv.x, cv.y
    a, b = _c(p.face_a), _c(p.face_b)
    cover = _cover(_face_sd(p, x, y), cv.pw)
    r2 = (x / a) ** 2 + (y / b) ** 2
    shade = 1.06 - 0.16 * r2 + 0.07 * _c(p.light) * x / a
    _over(cv.img, cover, p.skin[:, :, None, None] * shade[:, None])
    sub, idx = _subset(cv, p.stubble)
    if sub is None:
        return
    q = sub.p
    top = _c(q.mouth_y) - 0.09 - 0.8 * sub.x * sub.x  # beard line rises towards the ears
    band = np.clip((sub.y - top) * 6.0, 0.0, 1.0) * cover[idx] * 0.15
    _over(sub.img, band, q.brow_colour * 0.6 + q.skin * 0.2)
    _commit(cv, sub, idx)


def _draw_cheeks(cv: _Canvas) -> None:
    p = cv.p
    cy = p.nose_y + 0.02
    cv = _crop(cv, p.eye_x + 0.14, cy - 0.115, cy + 0.115)
    sub, idx = _subset(cv, p.rosy)
    if sub is None:
        return
    q = sub.p
    r = _circle(np.abs(sub.x) - _c(q.eye_x) - 0.02, sub.y - _c(q.nose_y + 0.02), 0.0)
    alpha = np.clip(1.0 - r / 0.11, 0.0, 1.0) * 0.5
    _over(sub.img, alpha, np.broadcast_to(np.float32([0.92, 0.35, 0.38]), q.skin.shape))
    _commit(cv, sub, idx)


def _cap_sd(p: FaceParams, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hair on top of the head: outer head ellipse above a curved hairline."""
    a, b, m = _c(p.face_a), _c(p.face_b), _c(p.hair_margin)
    outer = _ellipse(x, y + _c(p.hair_top), a + m, b + m)
    xp = x - _c(p.hair_part)
    line = _c(p.hairline) + _c(p.hairline_curve) * xp * xp
    # Bangs: a fringe reaching towards the brows with a wavy lower edge.
    fringe = _c(p.brow_y) - 0.035 + 0.012 * np.cos(60.0 * x + _c(p.hair_phase))
    line = np.where(_c(p.bangs), np.maximum(line, fringe), line)
    # Temples / sideburns: the hairline drops to ear level at the sides.
    side = _c(p.eye_y) + 0.02 - 2.5 * (a * 0.94 - np.abs(x))
    return np.maximum(outer, y - np.maximum(line, side))


def _draw_hair_front(cv: _Canvas) -> None:
    p = cv.p
    reach = p.face_a + p.hair_margin + 0.03
    top = -(p.face_b + p.hair_margin + p.hair_top) - 0.01
    sideburn = p.eye_y + 0.03 + 2.5 * (0.06 * p.face_a + p.hair_margin)  # see _cap_sd
    bottom = np.where(p.long_hair, np.maximum(p.hair_end, sideburn), sideburn) + 0.01
    crop = _crop(cv, reach, top, bottom[~p.bald].max(initial=0.0))
    sub, idx = _subset(crop, ~p.bald)
    if sub is not None:
        q, x, y = sub.p, sub.x, sub.y
        d = _cap_sd(q, x, y)
        # Long hair: strands falling beside the face, over the edges of the cheeks.
        strands = np.maximum(_long_hair_sd(q, x, y), _c(q.strand_x) - np.abs(x))
        strands = np.maximum(strands, _c(q.eye_y) - 0.1 - y)
        d = np.where(_c(q.long_hair), np.minimum(d, strands), d)
        _over(sub.img, _cover(d, sub.pw), _hair_texture(q, x, y))
        _commit(crop, sub, idx)
    crop = _crop(cv, reach, top, p.eye_y + 0.13)
    sub, idx = _subset(crop, p.bald)
    if sub is not None:  # a fringe of hair around the ears and a shiny scalp
        q, x, y = sub.p, sub.x, sub.y
        a, b, m = _c(q.face_a), _c(q.face_b), _c(q.hair_margin)
        outer = _ellipse(x, y, a + m, b + m)
        inner = _ellipse(x, y + 0.04, a * 0.9, b * 0.95)
        band = y - _c(q.eye_y) - 0.1 + 0.5 * (a - np.abs(x))  # rises towards the temples
        d = np.maximum(np.maximum(outer, -inner), np.maximum(band, -0.3 - y))
        _over(sub.img, _cover(d, sub.pw), _hair_texture(q, x, y))
        shine = _ellipse(x + 0.12 * a, y + b * 0.78, a * 0.35, b * 0.12)
        _over(sub.img, np.clip(-shine * 10.0, 0.0, 1.0) * 0.25, np.ones_like(q.skin))
        _commit(crop, sub, idx)


def _draw_hat(cv: _Canvas) -> None:
    p = cv.p
    window = (
        p.face_a + p.hair_margin + 0.18,
        -(p.face_b + p.hair_margin + p.hair_top) - 0.06,
        p.hat_brim + 0.04,
    )
    cv = _crop(cv, *window)
    sub, idx = _subset(cv, p.hat)
    if sub is None:
        return
    q, x, y, pw = sub.p, sub.x, sub.y, sub.pw
    a, b, m = _c(q.face_a), _c(q.face_b), _c(q.hair_margin)
    brim_y = _c(q.hat_brim)
    crown = _ellipse(x, y + _c(q.hair_top), a + m + 0.03, b + m + 0.05)
    crown = np.maximum(crown, y - brim_y)
    brim = _box(x, y - brim_y, a + m + 0.16, 0.035, 0.03)
    colour = q.hat_colour[:, :, None, None] * (1.0 - 0.15 * ((y - brim_y) / b)[:, None] ** 2)
    _over(sub.img, _cover(crown, pw), colour)
    _over(sub.img, _cover(brim, pw), q.hat_colour * 0.8)
    _commit(cv, sub, idx)


def _draw_brows(cv: _Canvas) -> None:
    p = cv.p
    cv = _crop(cv, p.brow_x + p.brow_len + 0.05, p.brow_y - 0.09, p.brow_y + 0.09)
    if cv is None:
        return
    px = np.abs(cv.x) - _c(p.brow_x)
    py = cv.y - _c(p.brow_y)
    c, s = np.cos(_c(p.brow_angle)), np.sin(_c(p.brow_angle))
    rx = c * px - s * py
    ry = s * px + c * py
    ln = _c(p.brow_len)
    ry = ry + _c(p.brow_arch) * (ln * ln - rx * rx) * 0.35  # arched: middle higher
    taper = _c(p.brow_thick) * (1.0 - 0.45 * np.clip(rx / ln, 0.0, 1.0))  # thin outer tail
    d = np.maximum(np.abs(ry) - taper, np.abs(rx) - ln)
    _over(cv.img, _cover(d, cv.pw), p.brow_colour)


def _draw_eyes(cv: _Canvas) -> None:
    p = cv.p
    reach = p.eye_ry + 1.25 * p.lash + 0.03
    cv = _crop(cv, p.eye_x + p.eye_rx + 1.25 * p.lash + 0.02, p.eye_y - reach, p.eye_y + reach)
    if cv is None:
        return
    img, pw = cv.img, cv.pw
    ex = np.abs(cv.x) - _c(p.eye_x)
    ey = cv.y - _c(p.eye_y)
    sclera = _ellipse(ex, ey, _c(p.eye_rx), _c(p.eye_ry))
    inside = _cover(sclera, pw)
    _over(img, inside, np.full_like(p.skin, 0.96))
    ix = ex - _c(p.gaze_x) * np.sign(cv.x)  # same gaze direction for both eyes
    iy = ey - _c(p.gaze_y)
    r = np.sqrt(ix * ix + iy * iy)
    _over(img, _cover(r - _c(p.iris_r), pw) * inside, p.iris)
    _over(img, _cover(r - _c(p.iris_r) * 0.45, pw) * inside, np.full_like(p.skin, 0.03))
    glint = _circle(ix + _c(p.iris_r) * 0.35, iy + _c(p.iris_r) * 0.35, _c(p.iris_r) * 0.22)
    _over(img, _cover(glint, pw) * inside * 0.8, np.ones_like(p.skin))
    # Lids: outline, heavier on the upper lid (lashes).
    upper = np.clip(0.5 - ey / _c(p.eye_ry), 0.0, 1.0)
    width = _c(p.lash) * (0.45 + 0.8 * upper)
    _over(img, _cover(np.abs(sclera) - width, pw) * 0.9, p.brow_colour * 0.4)


def _draw_nose(cv: _Canvas) -> None:
    p = cv.p
    cv = _crop(cv, 1.2 * p.nose_w + 0.01, 0.05 * p.nose_y - 0.03, p.nose_y + 0.04, pad=3.0)
    if cv is None:
        return
    x, y, pw = cv.x, cv.y, cv.pw
    ax, ny, nw = np.abs(x), _c(p.nose_y), _c(p.nose_w)
    tip = _ellipse(x, y - ny - 0.005, nw * 1.2, 0.028)
    _over(cv.img, np.clip(0.5 - tip / (3.0 * pw), 0.0, 1.0) * 0.22, p.skin * 0.6)
    nostril = _ellipse(ax - nw * 0.55, y - ny - 0.008, nw * 0.35, 0.012)
    _over(cv.img, _cover(nostril, pw) * 0.55, p.skin * 0.4)
    side = np.where(_c(p.light) > 0, -1.0, 1.0)  # shadow on the side away from the light
    bridge = _box(x - side * nw * 0.8, y - ny * 0.5 + 0.01, 0.006, ny * 0.45 + 0.01, 0.006)
    _over(cv.img, _cover(bridge, 2 * pw) * 0.18, p.skin * 0.6)


def _draw_mustache(cv: _Canvas) -> None:
    p = cv.p
    window = (p.mouth_w + 0.045, p.mouth_y - 0.085, p.mouth_y - 0.005)
    cv = _crop(cv, *window)
    sub, idx = _subset(cv, p.mustache)
    if sub is None:
        return
    q, x, y = sub.p, sub.x, sub.y
    my, mw = _c(q.mouth_y), _c(q.mouth_w)
    d = _ellipse(x, y - my + 0.045, mw + 0.035, 0.03)
    d = np.maximum(d, y - my + 0.018 - 0.5 * (x / (mw + 0.03)) ** 2 * 0.04)
    _over(sub.img, _cover(d, sub.pw), q.brow_colour * 0.9)
    _commit(cv, sub, idx)


def _draw_mouth(cv: _Canvas) -> None:
    p = cv.p
    y0 = p.mouth_y - np.maximum(p.mouth_lift, 0) - p.open_upper - p.lip_upper - 0.012
    y1 = p.mouth_y + np.maximum(-p.mouth_lift, 0) + p.open_lower + p.lip_lower + 0.012
    cv = _crop(cv, p.mouth_w + 0.012, y0, y1)
    if cv is None:
        return
    x, y, pw = cv.x, cv.y, cv.pw
    my, mw = _c(p.mouth_y), _c(p.mouth_w)
    xn = x / mw
    t = np.clip(1.0 - xn * xn, 0.0, 1.0)
    centre = my - _c(p.mouth_lift) * xn * xn
    up_in = centre - _c(p.open_upper) * t
    lo_in = centre + _c(p.open_lower) * t
    st = np.sqrt(t)
    up_out = up_in - _c(p.lip_upper) * st
    lo_out = lo_in + _c(p.lip_lower) * st
    edge = np.abs(x) - mw
    lips = np.maximum(np.maximum(up_out - y, y - lo_out), edge)
    _over(cv.img, _cover(lips, pw), p.lip_colour)
    interior = np.maximum(np.maximum(up_in - y, y - lo_in), edge)
    dark = np.broadcast_to(np.float32([0.18, 0.03, 0.04]), p.skin.shape)
    _over(cv.img, _cover(interior, pw), dark)
    teeth = np.maximum(interior, y - up_in - 0.35 * (lo_in - up_in) - 0.002)
    is_open = _c(p.open_lower) > 0
    _over(cv.img, _cover(teeth, pw) * is_open, np.full_like(p.skin, 0.94))
    line = np.maximum(np.abs(y - centre) - 0.0055, edge - 0.004)
    _over(cv.img, _cover(line, pw) * 0.85, p.lip_colour * 0.45)


def _draw_glasses(cv: _Canvas) -> None:
    p = cv.p
    reach = p.lens_h + p.frame_thick + 0.02
    window = (p.face_a + 0.01, p.eye_y - reach, p.eye_y + reach)
    cv = _crop(cv, *window)
    sub, idx = _subset(cv, p.glasses)
    if sub is None:
        return
    q, ax, y, pw = sub.p, np.abs(sub.x), sub.y, sub.pw
    lx = ax - _c(q.eye_x)
    ly = y - _c(q.eye_y) - 0.005
    w, h = _c(q.lens_w), _c(q.lens_h)
    lens = np.where(_c(q.lens_round), _ellipse(lx, ly, w, h), _box(lx, ly, w, h, 0.3 * h))
    tint = np.where(q.sunglasses[:, None], 0.05, 0.85).astype(np.float32) * np.ones_like(q.skin)
    _over(sub.img, _cover(lens, pw) * np.where(_c(q.sunglasses), 0.9, 0.12), tint)
    ft = _c(q.frame_thick)
    frame = np.abs(lens) - ft * 0.5
    bridge = _box(ax, y - _c(q.eye_y) + 0.015, _c(q.eye_x) - w + ft, ft * 0.5)
    temple_x0 = _c(q.eye_x) + w
    temple_hx = 0.5 * (_c(q.face_a) * 0.98 - temple_x0)
    temple = _box(ax - temple_x0 - temple_hx, y - _c(q.eye_y) + 0.01, temple_hx, ft * 0.4)
    d = np.minimum(np.minimum(frame, bridge), temple)
    _over(sub.img, _cover(d, pw), q.frame_colour)
    _commit(cv, sub, idx)


_LAYERS = (
    _draw_long_hair_back,
    _draw_body,
    _draw_ears,
    _draw_face,
    _draw_cheeks,
    _draw_hair_front,
    _draw_hat,
    _draw_brows,
    _draw_eyes,
    _draw_nose,
    _draw_mustache,
    _draw_mouth,
    _draw_glasses,
)


def _render_chunk(p: FaceParams, resolution: int) -> np.ndarray:
    n, r = len(p.tx), resolution
    grid = ((np.arange(r, dtype=np.float32) + 0.5) * (2.0 / r) - 1.0).astype(np.float32)
    u, v = grid[None, None, :], grid[None, :, None]
    cos, sin, s = _c(np.cos(p.rot)), _c(np.sin(p.rot)), _c(p.scale)
    du, dv = u - _c(p.tx), v - _c(p.ty)
    x = ((cos * du + sin * dv) / s).astype(np.float32)
    y = ((cos * dv - sin * du) / s).astype(np.float32)
    pw = ((2.0 / r) / s).astype(np.float32)
    img = np.empty((n, 3, r, r), dtype=np.float32)
    canvas = _Canvas(img, x, y, pw, p, grid, grid, r)
    _draw_background(canvas)
    for layer in _LAYERS:
        layer(canvas)
    img *= (1.0 - 0.08 * (u * u + v * v))[:, None]  # soft vignette
    np.clip(img * 255.0 + 0.5, 0.0, 255.0, out=img)
    return img.astype(np.uint8)


def _chunk_size(resolution: int) -> int:
    return max(1, (1 << 18) // (resolution * resolution))


def sample_attributes(n: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Attributes of faces ``start .. start+n-1`` without rendering, (n, K) int8."""
    _check(n, 16, seed, start)
    return _sample_params(seed, np.arange(start, start + n)).attributes


def _check(n: int, resolution: int, seed: int, start: int) -> None:
    if n < 0 or start < 0 or seed < 0:
        raise ValueError(f"n, seed and start must be non-negative, got {n=}, {seed=}, {start=}")
    if resolution < 16:
        raise ValueError(f"resolution must be >= 16, got {resolution}")


def render_faces(
    n: int, resolution: int = 64, seed: int = 0, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Render faces ``start .. start+n-1`` of the data set defined by ``seed``.

    Returns ``(images, attributes)``: images uint8 (n, 3, resolution, resolution),
    channel-first RGB; attributes int8 (n, len(ATTRIBUTE_NAMES)) with values 0/1.
    Face ``i`` depends only on ``(seed, start + i)``, so any split of a range into
    calls yields the same arrays.
    """
    _check(n, resolution, seed, start)
    images = np.empty((n, 3, resolution, resolution), dtype=np.uint8)
    attributes = np.empty((n, len(ATTRIBUTE_NAMES)), dtype=np.int8)
    step = _chunk_size(resolution)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        params = _sample_params(seed, np.arange(start + lo, start + hi))
        images[lo:hi] = _render_chunk(params, resolution)
        attributes[lo:hi] = params.attributes
    return images, attributes
