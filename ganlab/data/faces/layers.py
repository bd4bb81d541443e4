"""The drawing layers of a face, back to front (hair, body, ears, face ... glasses)."""

from __future__ import annotations

import numpy as np

from ganlab.data.faces.params import FaceParams
from ganlab.data.faces.shapes import (_Canvas, _box, _c, _circle, _commit, _cover, _crop, _ellipse, _over,
                                      _subset)


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
