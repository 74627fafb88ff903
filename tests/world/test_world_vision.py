"""Region matching: a region is found however the code framed it (zoomed, turned, stretched, far
from the image's corner) and where it is, and a place that is not the region is not found."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import ImageOps

from pipeline.images import read_image
from world import load_tasks
from world.vision import locate, region_template


@pytest.mark.parametrize("category", ["perception", "interleaved"])
def test_a_region_is_found_and_placed_in_a_zoomed_turned_stretched_crop(
    small_world: Path, category: str
) -> None:
    task = next(t for t in load_tasks(small_world) if t.category == category and t.gold_region)
    scene = read_image(task.images[0]).convert("RGB")
    x0, y0, x1, y1 = task.gold_region
    template = region_template(scene, task.gold_region, colour=category == "interleaved")
    # the region sits in the far corner of a wide crop: the fine check must look where the coarse
    # search pointed, not near the origin
    left, top = max(0, round(x0 - 3 * (x1 - x0))), max(0, round(y0 - 3 * (y1 - y0)))
    crop = scene.crop((left, top, min(scene.width, round(x1) + 20), min(scene.height, round(y1) + 20)))
    zoom = 1.7
    observed = ImageOps.autocontrast(crop.resize((round(crop.width * zoom), round(crop.height * zoom))))
    observed = observed.rotate(90, expand=True)  # counter-clockwise: one quarter turn back to upright

    match = locate(observed, template)

    assert match.found and match.turns % 4 == 3
    assert match.to_scene == pytest.approx(1 / zoom, rel=0.05)
    bx0, by0, bx1, by1 = (v * match.to_scene for v in match.box)  # scene px, relative to the crop
    near = 0.07 * max(x1 - x0, y1 - y0)  # the fine scale step is 2%
    assert (bx0 + left, by0 + top) == (pytest.approx(x0, abs=near), pytest.approx(y0, abs=near))
    assert (bx1 + left, by1 + top) == (pytest.approx(x1, abs=near), pytest.approx(y1, abs=near))


def test_a_crop_of_somewhere_else_is_not_the_region(small_world: Path) -> None:
    task = next(t for t in load_tasks(small_world) if t.category == "interleaved" and t.gold_region)
    scene = read_image(task.images[0]).convert("RGB")
    x0, y0, x1, y1 = task.gold_region
    width = x1 - x0
    # the same size of crop, beside the region instead of on it
    dx = width * 1.5 if x1 + width * 1.5 < scene.width else -width * 1.5
    elsewhere = scene.crop((round(x0 + dx), round(y0), round(x1 + dx), round(y1)))
    template = region_template(scene, task.gold_region, colour=True)
    assert not locate(elsewhere.resize((elsewhere.width * 2, elsewhere.height * 2)), template).found
