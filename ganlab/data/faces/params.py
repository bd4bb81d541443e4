"""Per-face drawing parameters: face ``i`` is drawn from ``(seed, i)`` alone, its attribute labels
from the same random flags that drive the drawing."""

from __future__ import annotations

import dataclasses

import numpy as np

from ganlab.data.faces.attributes import (
    ATTRIBUTE_NAMES, HAIR_COLOUR_PROBS, P_BALD_GIVEN_MALE, P_BANGS_GIVEN_HAIR, P_BUSHY_GIVEN_FEMALE,
    P_BUSHY_GIVEN_MALE, P_EYEGLASSES, P_HAT, P_LIPSTICK_GIVEN_FEMALE, P_LONG_GIVEN_FEMALE, P_LONG_GIVEN_MALE,
    P_MALE, P_MUSTACHE_GIVEN_MALE, P_NARROW_EYES, P_OPEN_GIVEN_NEUTRAL, P_OPEN_GIVEN_SMILING, P_OVAL, P_PALE,
    P_ROSY, P_SMILING, P_STUBBLE_GIVEN_MALE, P_SUNGLASSES_GIVEN_GLASSES)
from ganlab.data.faces.palette import (_FRAME_PALETTE, _HAIR_PALETTE, _IRIS_PALETTE, _SKIN_PALETTE, _palette,
                                       _pick, _random_colour, _u3)

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
