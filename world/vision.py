"""Looking at images the way the oracle and its judges need to: measured, never assumed.

- `label_text_height`: height in pixels of the text on a label plate inside an image, measured
  from the pixels (rows whose contrast against the plate exceeds half the peak contrast).
- `locate`: does an image (a crop, possibly zoomed, rotated or contrast-stretched, made by
  anyone's code) show a given region of a scene? Multi-scale, multi-rotation normalised
  cross-correlation; NCC is invariant to linear contrast changes, so autocontrast still matches.
  A grey coarse search over the whole image finds candidates; the fine check correlates only a
  window around each (NCC at a position depends only on the pixels under the template, so a
  window gives the full image's scores there at a fraction of the cost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

#: Text shorter than this (pixels of glyph height) is treated as illegible for a VLM.
LEGIBLE_TEXT_PX = 9
#: NCC score above which an image is taken to show a region.
REGION_MATCH = 0.85
#: Peak text-vs-plate contrast (grey levels) below which faint text does not count as readable.
MIN_CONTRAST = 40
_WORK_SIDE = 96  # template side (pixels) at the fine working scale
_COARSE_SIDE = 40
#: Largest searched image side per level: bounds the cost; a region that small is not readable anyway.
_MAX_SIDE = (420, 1000)
#: Fine-check window around a coarse candidate, each side: this many template sides, at least
#: _FINE_MIN_PX pixels. The coarse step (x1.1 in scale, a few coarse pixels in position) lands
#: well inside it; on the world's recorded checks every found region scores as in a whole-image
#: search (a score far outside the window is a different, unfound, place).
_FINE_RADIUS = 0.5
_FINE_MIN_PX = 16


#: Side of the thumbnail that tells the world's task images apart (`thumbnail_signature`).
SIGNATURE_SIDE = 32


def thumbnail_signature(image: Image.Image) -> np.ndarray:
    """A small grey box-filtered thumbnail (uint8): tells the world's task images apart at any
    resolution, so the oracle can match a resized data URI to the task image it came from."""
    return np.asarray(image.convert("L").resize((SIGNATURE_SIDE,) * 2, Image.Resampling.BOX), dtype=np.uint8)


def _gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float32)


def label_text_height(
    image: Image.Image, box: tuple[float, float, float, float], quarter_turns: int = 0
) -> tuple[int, float]:
    """(glyph height in px, peak contrast in grey levels) of the text on the plate at `box`.

    `quarter_turns` rotates the patch counter-clockwise so its text is upright before measuring.
    """
    x0, y0, x1, y1 = (round(v) for v in box)
    patch = _gray(image.crop((x0 + 1, y0 + 1, x1 - 1, y1 - 1)))
    patch = np.rot90(patch, quarter_turns % 4)
    deviation = np.abs(patch - np.median(patch))
    peak = float(deviation.max()) if deviation.size else 0.0
    if peak < 1.0:
        return 0, peak
    rows = deviation.max(axis=1) > peak / 2
    best = run = 0
    for on in rows:
        run = run + 1 if on else 0
        best = max(best, run)
    return best, peak


def _prep(array: np.ndarray, scale: float) -> np.ndarray:
    h, w = array.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = cv2.resize(array, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return cv2.GaussianBlur(resized, (0, 0), 1.0)


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


@dataclass
class RegionTemplate:
    """The core of a scene region, prepared once at two working scales (coarse, fine) for matching."""

    region: list[float]
    levels: list[tuple[np.ndarray, float]]  # (template, working px per scene px), coarse first
    margin: tuple[float, float]  # scene px trimmed from each side of the region


def region_template(scene: Image.Image, region: list[float], *, colour: bool = False) -> RegionTemplate:
    """Coarse search is grey (cheap); the fine check is colour for emblems (shapes alone are
    ambiguous in grey) and grey for text plates (faint text lives in luminance)."""
    x0, y0, x1, y1 = region
    mx, my = (x1 - x0) * 0.08, (y1 - y0) * 0.08
    crop = scene.crop((round(x0 + mx), round(y0 + my), round(x1 - mx), round(y1 - my)))
    levels = []
    for side, use_colour in ((_COARSE_SIDE, False), (_WORK_SIDE, colour)):
        core = _rgb(crop) if use_colour else _gray(crop)
        work = min(1.0, side / max(core.shape[:2]))
        levels.append((_prep(core, work), work))
    return RegionTemplate(list(region), levels, (mx, my))


@dataclass
class Match:
    """Where a region was found: score, quarter turns (observed -> scene), scale, box in the turned image."""

    score: float
    turns: int = 0
    to_scene: float = 1.0  # scene px per observed px
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    at: tuple[float, float] = (0.0, 0.0)  # the template's top-left, observed px in the turned image

    @property
    def found(self) -> bool:
        return self.score >= REGION_MATCH


def locate(image: Image.Image, template: RegionTemplate) -> Match:
    """Best colour NCC match of the region in `image` over quarter turns and scales (coarse to fine)."""

    def pyramid(observed: np.ndarray) -> list[list[tuple[np.ndarray, float]]]:
        """Per quarter turn, levels each half the last, so every rescale starts nearby."""
        levels = [(observed, 1.0)]
        while max(levels[-1][0].shape[:2]) > 64:
            level, scale = levels[-1]
            levels.append((cv2.resize(level, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), scale / 2))
        return [[(np.ascontiguousarray(np.rot90(a, t)), sc) for a, sc in levels] for t in range(4)]

    grey = pyramid(_gray(image))
    fine = pyramid(_rgb(image)) if template.levels[1][0].ndim == 3 else grey
    x0, y0, x1, y1 = template.region
    mx, my = template.margin

    def attempt(level: int, turns: int, to_scene: float, near: tuple[float, float] | None = None) -> Match:
        """One scale and turn; `near` (observed px) limits the search to a window around it."""
        array, work = template.levels[level]
        th, tw = array.shape[:2]
        s = to_scene * work
        turned_levels = (grey, fine)[level]
        h, w = turned_levels[turns][0][0].shape[:2]
        if h * s < th + 1 or w * s < tw + 1 or max(h, w) * s > _MAX_SIDE[level]:
            return Match(-1.0)
        source, level_scale = next(
            ((a, sc) for a, sc in reversed(turned_levels[turns]) if sc >= s), turned_levels[turns][0]
        )
        prepared = _prep(source, s / level_scale)
        if prepared.shape[0] < th or prepared.shape[1] < tw or float(prepared.std()) < 1e-3:
            return Match(-1.0)
        ox = oy = 0
        if near is not None:
            radius = max(_FINE_MIN_PX, _FINE_RADIUS * max(th, tw))
            cx, cy = near[0] * s, near[1] * s
            ox = max(0, min(prepared.shape[1] - tw, round(cx - radius)))
            oy = max(0, min(prepared.shape[0] - th, round(cy - radius)))
            prepared = prepared[oy : round(cy + radius) + th + 1, ox : round(cx + radius) + tw + 1]
            if prepared.shape[0] < th or prepared.shape[1] < tw:
                return Match(-1.0)
        _, value, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(prepared, array, cv2.TM_CCOEFF_NORMED))
        x, y = x + ox, y + oy
        box = (
            (x - mx * work) / s,
            (y - my * work) / s,
            (x + (x1 - x0 - mx) * work) / s,
            (y + (y1 - y0 - my) * work) / s,
        )
        return Match(float(value), turns, to_scene, box, (x / s, y / s))

    coarse = [
        attempt(0, t, math.exp(v))
        for t in range(4)
        for v in np.arange(math.log(0.1), math.log(2.6), math.log(1.1))
    ]
    coarse.sort(key=lambda m: -m.score)
    best = Match(-1.0)
    for seed in coarse[:3]:
        if seed.score < 0:
            continue
        for factor in np.linspace(0.9, 1.1, 11):
            candidate = attempt(1, seed.turns, seed.to_scene * float(factor), near=seed.at)
            if candidate.score > best.score:
                best = candidate
    return best


def read_label(image: Image.Image, template: RegionTemplate, quarter_turns: int) -> dict:
    """What an image shows of a label plate: found?, upright?, glyph height and contrast there."""
    match = locate(image, template)
    if not match.found:
        return {"found": False, "score": round(match.score, 3)}
    turned = Image.fromarray(np.ascontiguousarray(np.rot90(np.asarray(image.convert("L")), match.turns)))
    bx0, by0, bx1, by1 = match.box
    ix, iy = (bx1 - bx0) * 0.12, (by1 - by0) * 0.12  # stay clear of whatever surrounds the plate
    height, contrast = label_text_height(turned, (bx0 + ix, by0 + iy, bx1 - ix, by1 - iy), quarter_turns)
    upright = (match.turns + quarter_turns) % 4 == 0
    return {
        "found": True,
        "score": round(match.score, 3),
        "upright": upright,
        "height": height,
        "contrast": round(contrast, 1),
        "legible": upright and height >= LEGIBLE_TEXT_PX and contrast >= MIN_CONTRAST,
    }


def shows_region(
    image: Image.Image, scene: Image.Image, region: list[float], *, colour: bool = False
) -> bool:
    return locate(image, region_template(scene, region, colour=colour)).found
