"""Attribute names (CelebA order) and the probabilities that drive sampling them."""

from __future__ import annotations


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
