"""Entity images: bold procedural emblems a perceptual hash can find again.

An emblem is a few large, saturated shapes on a coloured field. Large structures dominate the
low frequencies that perceptual hashes (pHash, dHash) and feature indexes look at, so an emblem
cropped out of a scene and rescaled still hashes close to its original and far from the others.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFilter

EMBLEM_SIZE = 256


def _colour(rng: random.Random, dark: bool | None = None) -> tuple[int, int, int]:
    lo, hi = (20, 120) if dark else (135, 250) if dark is False else (20, 250)
    return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))


def draw_emblem(seed: int, size: int = EMBLEM_SIZE) -> Image.Image:
    """A distinctive emblem for one entity (same seed, same pixels)."""
    rng = random.Random(f"emblem-{seed}")
    s = 4 * size  # draw large, then downsample: smooth edges, stable hashes
    image = Image.new("RGB", (s, s), _colour(rng, dark=rng.random() < 0.5))
    draw = ImageDraw.Draw(image)
    # a split field: one half or quadrant in a contrasting colour
    split = rng.choice(("h", "v", "d", "q"))
    field = _colour(rng)
    if split == "h":
        draw.rectangle((0, 0, s, rng.randint(s // 4, 3 * s // 4)), fill=field)
    elif split == "v":
        draw.rectangle((0, 0, rng.randint(s // 4, 3 * s // 4), s), fill=field)
    elif split == "d":
        draw.polygon([(0, 0), (s, 0), (0, s)] if rng.random() < 0.5 else [(s, 0), (s, s), (0, s)], fill=field)
    else:
        qx, qy = rng.choice(((0, 0), (s // 2, 0), (0, s // 2), (s // 2, s // 2)))
        draw.rectangle((qx, qy, qx + s // 2, qy + s // 2), fill=field)
    for _ in range(rng.randint(3, 5)):
        kind = rng.choice(("disc", "ring", "tri", "bar", "star"))
        cx, cy = rng.randint(s // 6, 5 * s // 6), rng.randint(s // 6, 5 * s // 6)
        r = rng.randint(s // 10, s // 4)
        colour = _colour(rng)
        if kind == "disc":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif kind == "ring":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(8, r // 3))
        elif kind == "tri":
            draw.regular_polygon((cx, cy, r), 3, rotation=rng.randint(0, 119), fill=colour)
        elif kind == "bar":
            w = rng.randint(s // 16, s // 8)
            if rng.random() < 0.5:
                draw.rectangle((0, cy - w, s, cy + w), fill=colour)
            else:
                draw.rectangle((cx - w, 0, cx + w, s), fill=colour)
        else:
            draw.regular_polygon((cx, cy, r), rng.randint(5, 8), rotation=rng.randint(0, 59), fill=colour)
    draw.rectangle((0, 0, s - 1, s - 1), outline=(0, 0, 0), width=s // 64)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def search_photo(emblem: Image.Image, seed: int, size: int = 512) -> Image.Image:
    """A 'photo' of an emblem for whole-image reverse search: rescaled, tinted, softly blurred."""
    rng = random.Random(f"photo-{seed}")
    image = emblem.resize((size, size), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(0.8))
    tint = Image.new("RGB", image.size, _colour(rng))
    return Image.blend(image, tint, 0.12)
