"""High-resolution scenes: clutter, small entity emblems in coloured frames, tiny text plates.

A scene is 2560x2048 (5.2 MP). The teacher receives images downscaled to about 1 MP, so a
plate whose glyphs are ~10 px tall here arrives ~4.5 px tall: illegible until the agent crops
and zooms. Plates come in three kinds: `zoom` (small), `rotate` (small and turned by a multiple
of 90 degrees) and `enhance` (small and low-contrast). Emblems are entity images at 120-170 px
inside a frame whose colour names them in the question.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from world.images import draw_emblem
from world.kg import Entity

SCENE_SIZE = (2560, 2048)
GRID = (5, 4)  # cells of 512 x 512
LABEL_FONT_SIZE = 13
PLATE_COLOURS = {
    "yellow": (236, 214, 64),
    "cyan": (96, 214, 226),
    "pink": (238, 150, 196),
    "white": (240, 240, 236),
    "orange": (240, 150, 60),
    "lime": (170, 226, 90),
    "lavender": (186, 168, 232),
    "silver": (190, 194, 200),
}
FRAME_COLOURS = {
    "red": (210, 30, 30),
    "blue": (30, 60, 210),
    "green": (20, 150, 50),
    "magenta": (200, 30, 190),
    "black": (10, 10, 10),
    "orange": (245, 130, 20),
    "teal": (20, 140, 140),
    "brown": (120, 70, 30),
}
PLATE_KINDS = ("zoom", "rotate", "enhance")
_CODE_LETTERS = "ACDEFHKLMNPRTVWXYZ"  # no I/O/B/S/G/Q/U/J: nothing to confuse with digits
_CODE_DIGITS = "2345679"


@dataclass
class Plate:
    code: str
    kind: str  # zoom | rotate | enhance
    colour: str
    box: list[float]  # axis-aligned bbox in scene pixels
    quarter_turns: int = 0  # counter-clockwise quarter turns that make the text upright


@dataclass
class Emblem:
    slug: str
    frame: str
    box: list[float]  # the emblem itself (inside the frame), scene pixels


@dataclass
class Scene:
    name: str
    plates: list[Plate]
    emblems: list[Emblem]


def where(box: list[float]) -> str:
    """A coarse position phrase for a box ('upper left', 'lower centre', ...)."""
    cx, cy = (box[0] + box[2]) / 2 / SCENE_SIZE[0], (box[1] + box[3]) / 2 / SCENE_SIZE[1]
    row = "upper" if cy < 0.38 else "lower" if cy > 0.62 else "middle"
    col = "left" if cx < 0.38 else "right" if cx > 0.62 else "centre"
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def font(size: int = LABEL_FONT_SIZE) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font: identical glyphs on every machine with the same Pillow."""
    return ImageFont.load_default(size=size)


def new_code(rng: random.Random, used: set[str]) -> str:
    while True:
        code = "".join(rng.choices(_CODE_LETTERS, k=2)) + "-" + "".join(rng.choices(_CODE_DIGITS, k=4))
        if code not in used:
            used.add(code)
            return code


def _background(rng: random.Random) -> Image.Image:
    w, h = SCENE_SIZE
    top, bottom = (
        np.array([rng.randint(60, 200) for _ in range(3)]),
        np.array([rng.randint(60, 200) for _ in range(3)]),
    )
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    column = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    return Image.fromarray(np.broadcast_to(column, (h, w, 3)).copy(), "RGB")


def _clutter(draw: ImageDraw.ImageDraw, rng: random.Random, words: list[str]) -> None:
    w, h = SCENE_SIZE
    for _ in range(420):
        x, y = rng.randint(-100, w), rng.randint(-100, h)
        dx, dy = rng.randint(12, 260), rng.randint(12, 260)
        colour = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        kind = rng.random()
        if kind < 0.35:
            draw.rectangle((x, y, x + dx, y + dy), fill=colour)
        elif kind < 0.65:
            draw.ellipse((x, y, x + dx, y + dy), fill=colour)
        elif kind < 0.85:
            draw.line((x, y, x + dx, y + dy), fill=colour, width=rng.randint(2, 9))
        else:
            draw.ellipse((x, y, x + dx, y + dx), outline=colour, width=rng.randint(3, 12))
    small = [font(s) for s in (10, 12, 16, 22)]
    for _ in range(140):
        draw.text(
            (rng.randint(0, w - 80), rng.randint(0, h - 30)),
            rng.choice(words),
            font=rng.choice(small),
            fill=(rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)),
        )


def render_plate(code: str, kind: str, colour: tuple[int, int, int], quarter_turns: int) -> Image.Image:
    """A plate with the code in tiny type; `enhance` plates have text barely darker than the plate."""
    f = font()
    left, top, right, bottom = f.getbbox(code)
    pad_x, pad_y = 10, 7
    plate = Image.new("RGB", (right - left + 2 * pad_x, bottom - top + 2 * pad_y), colour)
    ink = tuple(max(0, c - 16) for c in colour) if kind == "enhance" else (25, 25, 30)
    ImageDraw.Draw(plate).text((pad_x - left, pad_y - top), code, font=f, fill=ink)
    # Image.rotate is counter-clockwise; the reader must turn the other way to read it
    return plate.rotate(-90 * quarter_turns, expand=True) if quarter_turns else plate


def build_scene(
    name: str, seed: int, plates: list[tuple[str, str]], emblems: list[Entity], words: list[str]
) -> tuple[Image.Image, Scene]:
    """Draw one scene with the given (code, kind) plates and entity emblems; returns image + layout."""
    rng = random.Random(f"scene-{seed}-{name}")
    image = _background(rng)
    _clutter(ImageDraw.Draw(image), rng, words)
    cells = [(cx, cy) for cx in range(GRID[0]) for cy in range(GRID[1])]
    rng.shuffle(cells)
    cell_w, cell_h = SCENE_SIZE[0] // GRID[0], SCENE_SIZE[1] // GRID[1]
    plate_names, frame_names = list(PLATE_COLOURS), list(FRAME_COLOURS)
    rng.shuffle(plate_names)
    rng.shuffle(frame_names)
    layout = Scene(name=name, plates=[], emblems=[])
    for (code, kind), colour_name in zip(plates, plate_names, strict=False):
        turns = rng.choice((1, 2, 3)) if kind == "rotate" else 0
        plate = render_plate(code, kind, PLATE_COLOURS[colour_name], turns)
        cx, cy = cells.pop()
        x = cx * cell_w + rng.randint(40, cell_w - plate.width - 40)
        y = cy * cell_h + rng.randint(40, cell_h - plate.height - 40)
        image.paste(plate, (x, y))
        layout.plates.append(
            Plate(
                code=code,
                kind=kind,
                colour=colour_name,
                box=[x, y, x + plate.width, y + plate.height],
                quarter_turns=turns,
            )
        )
    for entity, frame_name in zip(emblems, frame_names, strict=False):
        side = rng.randint(120, 170)
        emblem = draw_emblem(entity.seed).resize((side, side), Image.Resampling.LANCZOS)
        border = 7
        cx, cy = cells.pop()
        x = cx * cell_w + rng.randint(40, cell_w - side - 40)
        y = cy * cell_h + rng.randint(40, cell_h - side - 40)
        ImageDraw.Draw(image).rectangle(
            (x - border, y - border, x + side + border - 1, y + side + border - 1),
            fill=FRAME_COLOURS[frame_name],
        )
        image.paste(emblem, (x, y))
        layout.emblems.append(Emblem(slug=entity.slug, frame=frame_name, box=[x, y, x + side, y + side]))
    return image, layout
