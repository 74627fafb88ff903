"""Text in produced images, read with tesseract through tesserocr, cached by image reference.

Why tesserocr: it keeps one tesseract engine loaded in the process and hands it Pillow images
in memory (about 13 ms for a 600x400 crop here), where pytesseract starts the `tesseract`
binary and reloads the model for every image (about 170 ms, same text): `bench/bench_ocr.py`
prints both. The model files come from Debian's `tesseract-ocr-eng` (`make setup`).

A crop of a scene is not a page: text on a small plate over clutter defeats tesseract's global
threshold. So an image is read in up to a few `VARIANTS` (dark strokes lifted off any background
by a black-hat filter at two sizes, also on a 2x upscale; plain grey; Sauvola thresholding; an
unsharp mask; quarter turns), each read only when the earlier ones did not support a claim, and each cached under the image's
content reference, the variant and the engine version (`RUN/cache/ocr.sqlite`).

Where tesseract or its model is missing, `ImageText.available` is False with the reason: the
image check says so once and keeps its older rules.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.sqlite_store import SqliteStore

if TYPE_CHECKING:
    from PIL import Image

    from pipeline.store import RunStore

# one tesseract thread: the filter reads images one at a time, and OpenMP threads only fight
# the other workers for the cores (tesseract's own advice for batch use); set before loading
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

#: bump when a variant's preprocessing changes: cached readings of the old one no longer apply
PREPROCESS_VERSION = "2"
#: the reading ladder, in the order that bore out most true claims per read on `bench/bench_ocr.py`
#: crops and the world's (black-hat first: plates over clutter); quarter turns for sideways text
VARIANTS = (
    "blackhat21",
    "grey",
    "up2blackhat31",
    "blackhat31",
    "sauvola",
    "sharp",
    "turn90",
    "turn270",
)
TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata")
_MAX_SIDE = 2000  # px; larger images are read downscaled (tesseract time grows with area)
log = logging.getLogger("trajforge.filter")


class OcrUnavailable(RuntimeError):
    """tesseract cannot run here (binding or model missing); the message says what to install."""


def find_tessdata(explicit: str | None = None) -> str:
    """The folder holding eng.traineddata: `explicit`, $TESSDATA_PREFIX, or Debian's."""
    candidates = [explicit] if explicit else [os.environ.get("TESSDATA_PREFIX"), *TESSDATA_DIRS]
    for folder in filter(None, candidates):
        if (Path(folder) / "eng.traineddata").is_file():
            return str(folder)
    where = explicit or ", ".join(TESSDATA_DIRS)
    raise OcrUnavailable(
        f"no eng.traineddata in {where}: install tesseract (`make setup`, or "
        "`apt-get install tesseract-ocr tesseract-ocr-eng`)"
    )


class Tesseract:
    """One loaded tesseract engine (sparse text: scenes, not pages); not shared across threads."""

    def __init__(self, tessdata: str | None = None) -> None:
        try:
            import tesserocr
        except ImportError as e:
            raise OcrUnavailable(f"the tesserocr binding is not installed ({e}): run `make setup`") from e
        path = find_tessdata(tessdata)
        try:
            self._api = tesserocr.PyTessBaseAPI(path=path, lang="eng", psm=tesserocr.PSM.SPARSE_TEXT)
        except RuntimeError as e:
            raise OcrUnavailable(f"tesseract would not start with {path}: {e}") from e
        self.version = f"tesseract {tesserocr.tesseract_version().split()[1]}"
        self._lock = threading.Lock()

    def read(self, image: Image.Image, *, sauvola: bool = False) -> str:
        with self._lock:
            self._api.SetVariable("thresholding_method", "2" if sauvola else "0")
            self._api.SetImage(image)
            return self._api.GetUTF8Text()


def prepare(image: Image.Image, variant: str) -> Image.Image:
    """The image as `variant` reads it (grey levels or black text on white)."""
    import cv2
    from PIL import Image as PILImage
    from PIL import ImageFilter

    grey = image.convert("L")
    if max(grey.size) > _MAX_SIDE:
        grey.thumbnail((_MAX_SIDE, _MAX_SIDE))
    if variant == "sharp":  # blurred strokes steepened
        return grey.filter(ImageFilter.UnsharpMask(radius=4, percent=200, threshold=2))
    if variant.startswith("turn"):
        grey = grey.rotate(int(variant[4:]), expand=True)
        variant = "blackhat21"
    if variant.startswith("up2") and max(grey.size) * 2 <= _MAX_SIDE:  # small glyphs made readable
        grey = grey.resize((grey.width * 2, grey.height * 2), PILImage.Resampling.LANCZOS)
    variant = variant.removeprefix("up2")
    if variant.startswith("blackhat"):
        size = int(variant[8:])
        pixels = np.asarray(grey)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
        strokes = cv2.morphologyEx(pixels, cv2.MORPH_BLACKHAT, kernel)  # dark and thinner than size
        _, ink = cv2.threshold(strokes, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        return PILImage.fromarray(255 - ink)
    return grey


class ImageText:
    """OCR text of stored images per variant, read lazily and cached; counts what it did."""

    def __init__(self, store: RunStore | None, *, enabled: bool = True, tessdata: str | None = None) -> None:
        self.store = store
        self.stats: Counter[str] = Counter()
        self.read_s = 0.0
        self._engine: Tesseract | None = None
        self._memo: dict[tuple[str, str], str | None] = {}
        self._colours: dict[str, dict[str, float] | None] = {}
        self._cost: dict[str, float] = {}  # seconds spent reading each image, all its variants
        self._cache: SqliteStore | None = None
        self.unavailable = "" if enabled else "off (filter.ocr=false)"
        self._tessdata = tessdata
        self._started = not enabled

    @property
    def available(self) -> bool:
        """Whether OCR can run (starts the engine on first use; says once why not)."""
        if not self._started:
            self._started = True
            try:
                self._engine = Tesseract(self._tessdata)
            except OcrUnavailable as e:
                self.unavailable = str(e)
                log.warning("image check: OCR not available (%s); falling back to rules without it", e)
        return self._engine is not None

    def _db(self) -> SqliteStore | None:
        if self._cache is None and self.store is not None:
            path = self.store.root / "cache" / "ocr.sqlite"
            self._cache = SqliteStore(path, "ocr (key TEXT PRIMARY KEY, text TEXT)")
        return self._cache

    def text(self, ref: str, variant: str = "grey") -> str | None:
        """What OCR reads in stored image `ref` (None when OCR or the image is unavailable)."""
        if (ref, variant) in self._memo:
            return self._memo[(ref, variant)]
        result = self._read(ref, variant)
        self._memo[(ref, variant)] = result
        return result

    def bears(self, ref: str, claim: str, variants: tuple[str, ...] = VARIANTS) -> bool:
        """Whether any variant's reading of `ref` bears out `claim` (later ones read only if needed)."""
        from filters.image_claims import supported

        for variant in variants:
            text = self.text(ref, variant)
            if text is None:
                return False
            if supported(claim, text):
                return True
        return False

    def reading(self, ref: str) -> str:
        """The first non-empty text the variants read so far gave for `ref` (for a drop's reason)."""
        for variant in VARIANTS:
            text = self._memo.get((ref, variant))
            if text and text.strip():
                return " ".join(text.split())
        return ""

    def _read(self, ref: str, variant: str) -> str | None:
        if not self.available or self.store is None or not self.store.images.has(ref):
            return None
        assert self._engine is not None
        key = f"{ref}|{variant}|{self._engine.version}|{PREPROCESS_VERSION}"
        db = self._db()
        row = db.one("SELECT text FROM ocr WHERE key = ?", (key,)) if db else None
        if row is not None:
            self.stats["cache_hits"] += 1
            return row[0]
        from pipeline.images import ImageError

        start = time.perf_counter()
        try:
            image = self.store.images.open(ref)
        except (ImageError, OSError):
            self.stats["unreadable_images"] += 1
            return None
        text = self._engine.read(prepare(image, variant), sauvola=variant == "sauvola")
        spent = time.perf_counter() - start
        self.read_s += spent
        self._cost[ref] = self._cost.get(ref, 0.0) + spent
        self.stats["images_read"] += 1
        if db is not None:
            db.write("INSERT OR REPLACE INTO ocr (key, text) VALUES (?, ?)", (key, text))
        return text

    def colours(self, ref: str) -> dict[str, float] | None:
        """Hue-bucket shares of stored image `ref` (None when absent or unreadable); no OCR needed."""
        if ref not in self._colours:
            from filters.image_claims import colour_shares
            from pipeline.images import ImageError

            self._colours[ref] = None
            if self.store is not None and self.store.images.has(ref):
                try:
                    self._colours[ref] = colour_shares(self.store.images.open(ref))
                except (ImageError, OSError):
                    self.stats["unreadable_images"] += 1
        return self._colours[ref]

    def summary(self) -> dict[str, Any]:
        """For the filter report: engine (or why none), reads, cache hits, claims checked."""
        engine = self._engine.version if self._engine else None
        out: dict[str, Any] = {"engine": engine, "unavailable": self.unavailable or None}
        out.update(sorted(self.stats.items()))
        out["read_s"] = round(self.read_s, 3)
        if self._cost:
            ms = np.array(sorted(self._cost.values())) * 1000
            out["per_image_ms"] = {"images": len(ms), "median": round(float(np.median(ms)), 1)}
            out["per_image_ms"]["p95"] = round(float(np.percentile(ms, 95)), 1)
        return out

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
