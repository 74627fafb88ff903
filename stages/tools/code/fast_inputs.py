"""Decode-friendly copies of large PNG inputs for the code sandbox: same pixels, cheaper reads.

Teacher code re-opens the full input on every call (R1V4 style: `Image.open(p).crop(box)`, and
PIL loads the whole image to crop it), and the K rollouts of a task make that call over the same
image again and again. Most of a large PNG's decode time goes to undoing its adaptive row
filters and inflating: about 90 ms for a 2560x2048 scene here, most of a crop call's CPU. The
same pixels written without row filters, in one IDAT chunk, decode in 20-45 ms (a crop call's
sandbox CPU about halves: `bench/bench_tools.py --only fast-inputs`), so each large PNG is
re-encoded once per pool (off the event loop, coalesced when rollouts ask at once) and the copy
is what the sandbox sees at /input.

Only copies whose pixels and mode PIL reads back identically are made: 8-bit L, RGB and RGBA
PNGs with no colour profile, gamma or transparency chunk (the copy would not carry them). Anything
else, and every JPEG (already cheap to decode), is staged as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from pipeline.images import ImageError, header_size, read_image
from pipeline.singleflight import SingleFlight
from pipeline.store import atomic_write_bytes
from stages.tools.code.png_encode import CHANNELS, PNG_MAGIC, fast_png

log = logging.getLogger(__name__)

#: Above this share of its raw size a PNG holds photo-like pixels, which fast deflate barely
#: shrinks and decodes slowly: store them. Below it (renders, charts, screenshots) level-1
#: deflate keeps the copy small and still decodes fastest.
_STORED_ABOVE_RATIO = 0.1
#: Entries remembered (copies and "not eligible" answers) before the oldest are forgotten.
_MAX_ENTRIES = 65_536


def write_unfiltered_png(source: Path, target: Path, max_pixels: int) -> bool:
    """Re-encode `source` as a filter-free PNG at `target`; False when it is not eligible."""
    with open(source, "rb") as handle:
        if handle.read(8) != PNG_MAGIC:
            return False
    image = read_image(source, max_pixels=max_pixels)
    if image.mode not in CHANNELS or {"icc_profile", "transparency", "gamma"} & set(image.info):
        return False
    raw = image.width * image.height * CHANNELS[image.mode]
    level = 0 if source.stat().st_size > _STORED_ABOVE_RATIO * raw else 1
    try:
        encoded = fast_png(np.asarray(image), level=level, row_filter="none")
    except ValueError:
        return False
    atomic_write_bytes(target, encoded)
    return True


class FastInputs:
    """The pool's cache of decode-friendly copies, keyed by the source file's identity.

    Bounded by bytes (least recently used copies are deleted first). `for_sandbox(path)`
    returns the copy, or `path` itself when the image is small, not eligible or unreadable (the
    code then meets the original, and its own error if any). `prefetch(path)` starts a copy
    without waiting for it.
    """

    def __init__(self, root: Path, *, min_pixels: int, max_bytes: int, max_pixels: int) -> None:
        self.root = root
        self.min_pixels = min_pixels
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._copies: OrderedDict[tuple[int, int, int, int], tuple[Path | None, int]] = OrderedDict()
        self._flights: SingleFlight[tuple[int, int, int, int], Path | None] = SingleFlight(self._settle)
        self._bytes = 0
        self.made = 0
        self.reused = 0

    async def for_sandbox(self, path: Path) -> Path:
        """The copy to stage for `path` (made now if it is not yet), or `path` itself."""
        known, first = self._start(path)
        if not first and known is not None:
            self.reused += 1  # made for an earlier request: a prefetch, or another rollout
        if isinstance(known, asyncio.Future):
            known = await asyncio.shield(known)
        return known or path

    def prefetch(self, path: Path) -> None:
        """Start making `path`'s copy in the background (a trajectory's inputs, as it starts: its
        first code call comes a teacher turn later and finds the copy ready instead of waiting)."""
        self._start(path)

    def _start(self, path: Path) -> tuple[Path | asyncio.Future[Path | None] | None, bool]:
        """(the copy, None for "use the original", or the future of the one being made; whether
        this request started it).

        The copy is made in a worker thread that belongs to no caller, so a cancelled rollout
        never cancels it (nor records the image as ineligible) for the others.
        """
        if self.min_pixels <= 0:
            return None, False
        try:
            info = path.stat()
        except OSError:
            return None, False
        key = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        if key in self._copies:
            self._copies.move_to_end(key)
            return self._copies[key][0], False
        return self._flights.join(
            key, lambda: asyncio.get_running_loop().run_in_executor(None, self._make, path, key)
        )

    def _settle(self, key: tuple[int, int, int, int], done: asyncio.Future[Path | None]) -> None:
        copy = None if done.cancelled() or done.exception() is not None else done.result()
        self.made += copy is not None
        self._remember(key, copy)

    async def aclose(self) -> None:
        """Wait for copies still being made (so none is written after the pool's folder is gone)."""
        await self._flights.wait_all()

    def _remember(self, key: tuple[int, int, int, int], copy: Path | None) -> None:
        size = copy.stat().st_size if copy is not None else 0
        self._copies[key] = (copy, size)
        self._bytes += size
        while len(self._copies) > 1 and (self._bytes > self.max_bytes or len(self._copies) > _MAX_ENTRIES):
            _, (old, old_size) = self._copies.popitem(last=False)
            self._bytes -= old_size
            if old is not None:
                old.unlink(missing_ok=True)  # a worker's hard link keeps staged bytes alive

    def _make(self, path: Path, key: tuple[int, int, int, int]) -> Path | None:
        try:
            width, height = header_size(path)
            if width * height < self.min_pixels:  # small images are cheap to decode anyway
                return None
            self.root.mkdir(parents=True, exist_ok=True)
            target = self.root / f"{'-'.join(map(str, key))}.png"
            made = write_unfiltered_png(path, target, self.max_pixels)
        except (ImageError, OSError, cv2.error) as exc:  # never fatal: the sandbox gets the original
            log.debug("no fast copy of %s: %s", path, exc)
            return None
        return target if made else None
