"""The fast PNG writer both sides of the sandbox use: same pixels, the asked-for row filter."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stages.tools.code.png_encode import fast_png
from tests.png_rows import png_chunks, row_filters
from tests.reference import reference

FILTER_TYPES = {"none": 0, "sub": 1, "up": 2, "paeth": 4}


def _pixels(mode: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 220, 300, dtype=np.float32)[None, :, None]
    rgb = np.clip(ramp + rng.normal(0, 8, (200, 300, 3)), 0, 255).astype(np.uint8)
    return {"L": rgb[..., 0], "RGB": rgb, "RGBA": np.dstack([rgb, rgb[..., 1]])}[mode]


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("row_filter", ["none", "up"])
def test_same_pixels_one_idat_and_the_asked_for_filter(mode: str, row_filter: str) -> None:
    pixels = _pixels(mode)
    png = fast_png(pixels, level=1, row_filter=row_filter)
    assert [kind for kind, _ in png_chunks(png)] == [b"IHDR", b"IDAT", b"IEND"]
    assert row_filters(png) == {FILTER_TYPES[row_filter]}
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == mode
        assert np.array_equal(np.asarray(image), pixels)  # channel order kept (cv2 writes BGR)


def test_other_pixel_layouts_are_refused() -> None:
    with pytest.raises(ValueError, match="8-bit"):
        fast_png(np.zeros((4, 4), np.uint16), level=1, row_filter="up")
    with pytest.raises(ValueError, match="channels"):
        fast_png(np.zeros((4, 4, 2), np.uint8), level=1, row_filter="up")


def test_real_photos_keep_their_pixels_zoomed_or_not() -> None:
    """The images of a real Wikipedia slice (the Kiwix ZIM in shared/reference: JPEG photos and
    PNG diagrams), as teacher code would save them as they are and zoomed 3x: same pixels back."""
    libzim = pytest.importorskip("libzim.reader")
    archive = libzim.Archive(str(reference("ray_charles.zim")))
    seen = 0
    for index in range(archive.all_entry_count):
        item = archive._get_entry_by_id(index).get_item()
        if not item.mimetype.startswith(("image/jpeg", "image/png")) or item.size < 5000:
            continue  # icons and the favicon say little
        with Image.open(io.BytesIO(bytes(item.content))) as image:
            photo = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        for version in (photo, photo.resize((photo.width * 3, photo.height * 3), Image.Resampling.LANCZOS)):
            pixels = np.asarray(version)
            with Image.open(io.BytesIO(fast_png(pixels, level=1, row_filter="up"))) as back:
                assert back.mode == version.mode and np.array_equal(np.asarray(back), pixels)
        seen += 1
        if seen == 12:
            break
    assert seen == 12
