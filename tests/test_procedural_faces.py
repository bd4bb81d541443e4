"""Tests for the embedded procedural face data set (ganlab.data.faces)."""

from __future__ import annotations

import numpy as np
import pytest

import ganlab.data.faces.shapes as face_shapes
from ganlab.data.faces import (
    ATTRIBUTE_NAMES,
    ATTRIBUTE_PROBS,
    render_faces,
    sample_attributes,
)

N = 2000  # faces used for the statistical tests
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")


@pytest.fixture(scope="module")
def faces():
    """2,000 faces at 64 px: float images in [0, 1] and a name -> bool mask dict."""
    images, attributes = render_faces(N, resolution=64, seed=11)
    masks = {name: attributes[:, k].astype(bool) for k, name in enumerate(ATTRIBUTE_NAMES)}
    return images.astype(np.float32) / 255.0, masks


def _region(images, rows, cols):
    """Mean colour (n, 3) of a box given as fractions of the 64-px frame."""
    r0, r1 = rows
    c0, c1 = cols
    return images[:, :, r0:r1, c0:c1].mean(axis=(2, 3))


def _luma(rgb):
    return rgb @ np.float32([0.299, 0.587, 0.114])


# --- API, shapes, determinism --------------------------------------------------------
@pytest.mark.parametrize("resolution", [16, 28, 32, 48, 64, 128])
def test_shapes_and_dtypes(resolution):
    images, attributes = render_faces(5, resolution=resolution, seed=0)
    assert images.shape == (5, 3, resolution, resolution)
    assert images.dtype == np.uint8
    assert attributes.shape == (5, len(ATTRIBUTE_NAMES))
    assert attributes.dtype == np.int8
    assert set(np.unique(attributes)) <= {0, 1}


def test_attributes_do_not_depend_on_resolution():
    _, a32 = render_faces(40, resolution=32, seed=5)
    _, a64 = render_faces(40, resolution=64, seed=5)
    np.testing.assert_array_equal(a32, a64)
    np.testing.assert_array_equal(a64, sample_attributes(40, seed=5))


def test_empty_and_invalid_requests():
    images, attributes = render_faces(0, resolution=32)
    assert images.shape == (0, 3, 32, 32) and attributes.shape == (0, len(ATTRIBUTE_NAMES))
    with pytest.raises(ValueError):
        render_faces(2, resolution=8)
    with pytest.raises(ValueError):
        render_faces(2, seed=-1)
    with pytest.raises(ValueError):
        render_faces(2, start=-3)


def test_same_seed_gives_identical_bytes():
    a, la = render_faces(32, resolution=48, seed=3)
    b, lb = render_faces(32, resolution=48, seed=3)
    assert a.tobytes() == b.tobytes()
    assert la.tobytes() == lb.tobytes()


def test_different_seed_gives_different_faces():
    a, _ = render_faces(32, resolution=48, seed=3)
    b, _ = render_faces(32, resolution=48, seed=4)
    per_face_diff = np.abs(a.astype(np.int16) - b).reshape(32, -1).mean(axis=1)
    assert (per_face_diff > 5).all()


def test_face_depends_only_on_seed_and_index():
    # 150 faces at 64 px span several internal chunks; the split points differ from them.
    whole, la = render_faces(150, resolution=64, seed=9)
    head, lh = render_faces(70, resolution=64, seed=9, start=0)
    tail, lt = render_faces(80, resolution=64, seed=9, start=70)
    np.testing.assert_array_equal(whole, np.concatenate([head, tail]))
    np.testing.assert_array_equal(la, np.concatenate([lh, lt]))
    single, _ = render_faces(1, resolution=64, seed=9, start=123)
    np.testing.assert_array_equal(single[0], whole[123])


def test_windowed_drawing_matches_full_frame_drawing(monkeypatch):
    # Local features are drawn only inside windows bounding them over the faces of a
    # chunk, for speed. Windows are tightest for single faces; no pixel may change.
    single = [render_faces(1, resolution=48, seed=2, start=i)[0] for i in range(150)]
    single = np.concatenate(single)
    monkeypatch.setattr(face_shapes, "_CROP", False)
    full, _ = render_faces(150, resolution=48, seed=2)
    np.testing.assert_array_equal(single, full)


def test_resolutions_render_the_same_scene():
    # Anti-aliased, resolution-independent geometry: 2x box-downsampled 128-px faces
    # match the 64-px rendering to within about one grey level on average.
    hi, _ = render_faces(60, resolution=128, seed=6)
    lo, _ = render_faces(60, resolution=64, seed=6)
    down = hi.astype(np.float32).reshape(60, 3, 64, 2, 64, 2).mean(axis=(3, 5))
    assert np.abs(down - lo).mean() < 2.0


# --- image content -----------------------------------------------------------------------
def test_images_are_varied_and_not_constant(faces):
    images, _ = faces
    per_image_std = images.reshape(N, -1).std(axis=1)
    assert per_image_std.min() > 0.05
    across_faces_std = images.std(axis=0)  # per pixel, across the data set
    assert across_faces_std.mean() > 0.15
    flat = images[:300].reshape(300, -1)
    assert len(np.unique(flat, axis=0)) == 300


def test_face_is_centred_and_skin_coloured(faces):
    images, _ = faces
    centre = _region(images, (28, 40), (26, 38))  # cheeks/nose
    r, g, b = centre.T
    # Skin: red >= green >= blue on average, in the middle of the frame for most faces.
    assert np.mean((r > g) & (g > b)) > 0.9


# --- attribute statistics and logic -------------------------------------------------------
def test_attribute_probs_cover_names():
    assert tuple(ATTRIBUTE_PROBS) == ATTRIBUTE_NAMES
    assert all(0.0 < p < 1.0 for p in ATTRIBUTE_PROBS.values())
    assert ATTRIBUTE_PROBS["Eyeglasses"] < 0.2  # rare, as in CelebA
    assert 0.35 < ATTRIBUTE_PROBS["Smiling"] < 0.65  # balanced


def test_attribute_frequencies_match_probs(faces):
    _, masks = faces
    for name, p in ATTRIBUTE_PROBS.items():
        tolerance = 4.0 * np.sqrt(p * (1 - p) / N) + 0.005
        assert abs(masks[name].mean() - p) < tolerance, name


def test_attribute_frequencies_large_sample():
    attributes = sample_attributes(20000, seed=1)
    freq = attributes.mean(axis=0)
    for k, name in enumerate(ATTRIBUTE_NAMES):
        assert abs(freq[k] - ATTRIBUTE_PROBS[name]) < 0.015, name


def test_attribute_logic(faces):
    _, m = faces
    hair_colour_count = sum(m[c].astype(int) for c in HAIR_COLOURS)
    assert hair_colour_count.max() == 1  # mutually exclusive
    assert not (m["Bald"] & (hair_colour_count > 0)).any()
    assert not (m["Bald"] & (m["Long_Hair"] | m["Bangs"] | m["Wearing_Hat"])).any()
    assert not (m["Bald"] & ~m["Male"]).any()
    assert not (m["Mustache"] & ~m["Male"]).any()
    assert not (m["Wearing_Lipstick"] & m["Male"]).any()
    # Male correlates with short hair, as in photographs.
    assert m["Long_Hair"][m["Male"]].mean() < 0.2 < 0.6 < m["Long_Hair"][~m["Male"]].mean()


# --- attributes are visible in the pixels ------------------------------------------------------
def test_hair_colour_visible_on_top_of_head(faces):
    images, m = faces
    top = _region(images, (11, 17), (27, 37))
    visible = ~m["Wearing_Hat"] & ~m["Bald"]
    luma = _luma(top)
    yellow = top[:, 0] + top[:, 1] - 2 * top[:, 2]
    blond, black = m["Blond_Hair"] & visible, m["Black_Hair"] & visible
    brown, gray = m["Brown_Hair"] & visible, m["Gray_Hair"] & visible
    assert luma[blond].mean() > luma[brown].mean() + 0.2 > luma[black].mean() + 0.3
    assert luma[gray].mean() > luma[brown].mean() + 0.2
    assert yellow[blond].mean() > yellow[gray].mean() + 0.3
    # Per face: most black-haired heads are darker than the darkest 10% of blond ones.
    assert np.mean(luma[black] < np.quantile(luma[blond], 0.1)) > 0.95


def test_bald_head_top_is_skin(faces):
    images, m = faces
    top = _region(images, (11, 17), (27, 37))
    cheek = (_region(images, (36, 41), (22, 27)) + _region(images, (36, 41), (37, 42))) / 2
    dist = np.abs(top - cheek).sum(axis=1)
    haired = ~m["Bald"] & ~m["Wearing_Hat"]
    assert np.median(dist[m["Bald"]]) < 0.3 < 0.8 < np.median(dist[haired])


def test_long_hair_visible_beside_the_chin(faces):
    images, m = faces
    side = (_region(images, (44, 51), (12, 18)) + _region(images, (44, 51), (46, 52))) / 2
    black = m["Black_Hair"]
    luma = _luma(side)
    assert luma[black & m["Long_Hair"]].mean() + 0.25 < luma[black & ~m["Long_Hair"]].mean()


def test_eyeglasses_darken_the_eye_band(faces):
    images, m = faces
    band = _luma(images[:, :, 25:37, 10:54].transpose(0, 2, 3, 1))
    dark = (band < 0.2).mean(axis=(1, 2))
    assert dark[m["Eyeglasses"]].mean() > 1.25 * dark[~m["Eyeglasses"]].mean()


def test_open_mouth_is_dark_inside(faces):
    images, m = faces
    mouth = _luma(_region(images, (43, 47), (28, 36)))
    assert mouth[m["Mouth_Slightly_Open"]].mean() + 0.05 < mouth[~m["Mouth_Slightly_Open"]].mean()


def test_smile_raises_the_mouth_corners(faces):
    images, m = faces
    closed = ~m["Mouth_Slightly_Open"]
    corners = _luma(_region(images, (40, 43), (24, 28)) + _region(images, (40, 43), (35, 39))) / 2
    below = _luma(_region(images, (44, 46), (26, 38)))
    lift = below - corners  # corners darker than the skin under the mouth when smiling
    smile, neutral = m["Smiling"] & closed, ~m["Smiling"] & closed
    assert lift[smile].mean() > lift[neutral].mean() + 0.02


def test_lipstick_is_red(faces):
    images, m = faces
    mouth = images[:, :, 41:49, 25:39]
    redness = (mouth[:, 0] - mouth[:, 1]).max(axis=(1, 2))
    assert redness[m["Wearing_Lipstick"]].mean() > redness[~m["Wearing_Lipstick"]].mean() + 0.1


def test_pale_skin_is_light(faces):
    images, m = faces
    cheek = _luma((_region(images, (36, 41), (22, 27)) + _region(images, (36, 41), (37, 42))) / 2)
    assert cheek[m["Pale_Skin"]].mean() > cheek[~m["Pale_Skin"]].mean() + 0.15


def test_rosy_cheeks_are_redder(faces):
    images, m = faces
    cheek = (_region(images, (36, 41), (22, 27)) + _region(images, (36, 41), (37, 42))) / 2
    redness = cheek[:, 0] - cheek[:, 1]
    assert redness[m["Rosy_Cheeks"]].mean() > redness[~m["Rosy_Cheeks"]].mean() + 0.04
