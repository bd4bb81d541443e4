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

from ganlab.data.faces.attributes import ATTRIBUTE_NAMES, ATTRIBUTE_PROBS
from ganlab.data.faces.render import render_faces, sample_attributes

__all__ = ["ATTRIBUTE_NAMES", "ATTRIBUTE_PROBS", "render_faces", "sample_attributes"]
