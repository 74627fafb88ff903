"""OCR benchmark (not a test; figures printed side by side in one run).

Crops made here: a plate with a printed code over busy clutter, in every font `fc-list` finds
among DejaVu/Liberation (and Pillow's bundled one), at several text heights, Gaussian blurs and
JPEG qualities, zoomed 4x as a teacher's crop code does (and once without zoom). For each:

(a) Binding: tesserocr (engine kept loaded, Pillow images in memory) vs pytesseract (runs the
    `tesseract` binary per image), same plain-grey input, sparse-text mode: ms per image and how
    often the code read matches. A binding that is not installed is said so and skipped.
(b) The image check's reader (`filters.ocr`, all its variants as a claim needs them): how often a
    true claim is borne out (a miss is a false drop) and how often a false claim is (a wrong code
    of the same shape; each is a missed defect), per font, size, blur and JPEG quality; the
    reader's cost per image (median, p95).

    python bench/bench_ocr.py [--codes 6] [--skip-bindings]
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from filters.image_claims import supported
from filters.ocr import VARIANTS, ImageText, Tesseract, find_tessdata, prepare
from pipeline.store import RunStore

FAMILIES = (
    "DejaVu Sans",
    "DejaVu Serif",
    "DejaVu Sans Mono",
    "Liberation Sans",
    "Liberation Serif",
    "Liberation Mono",
)
SIZES = (10, 13, 18, 28)  # text height in px before the 4x zoom (13: the world's plates)
BLURS = (0.0, 1.0, 2.0)  # Gaussian radius in px before the zoom
QUALITIES = (None, 60, 25)  # JPEG quality (None: lossless)
LETTERS, DIGITS = "ACDEFHKLMNPRTVWXYZ", "2345679"


def fonts() -> dict[str, str | None]:
    """Family -> font file for the families installed here, plus Pillow's bundled font (None)."""
    found: dict[str, str | None] = {"Pillow default": None}
    try:
        listing = subprocess.run(
            ["fc-list", ":", "family", "style", "file"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    for line in sorted(listing.splitlines()):  # "/path/x.ttf: Family A,Family B:style=Book"
        path, _, rest = line.partition(": ")
        families, _, style = rest.partition(":style=")
        if style.split(",")[0] not in ("Book", "Regular"):
            continue
        for family in FAMILIES:
            if family in [f.strip() for f in families.split(",")] and family not in found:
                found[family] = path.strip()
    return found


def code(rng: random.Random) -> str:
    return "".join(rng.choices(LETTERS, k=2)) + "-" + "".join(rng.choices(DIGITS, k=4))


def crop(text: str, font_file: str | None, size: int, blur: float, quality: int | None, zoom: int, seed: int):
    """A teacher's crop: the plate with `text` over clutter, blurred, JPEG'd, zoomed."""
    rng = random.Random(seed)
    font = ImageFont.truetype(font_file, size) if font_file else ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    w, h = right - left + 100, bottom - top + 80
    image = Image.new("RGB", (w, h), tuple(rng.randint(40, 200) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(14):  # clutter: blobs and strokes in random colours
        x, y, dx, dy = rng.randint(-20, w), rng.randint(-20, h), rng.randint(8, 80), rng.randint(8, 80)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + dx, y + dy), fill=colour)
        else:
            draw.line((x, y, x + dx, y + dy), fill=colour, width=rng.randint(2, 6))
    plate = tuple(rng.randint(150, 245) for _ in range(3))
    draw.rectangle((40, 30, w - 40, h - 30), fill=plate)
    draw.text((50 - left, 40 - top), text, font=font, fill=(25, 25, 30))
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    if quality is not None:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image.resize((w * zoom, h * zoom), Image.Resampling.LANCZOS) if zoom > 1 else image


def samples(codes: int) -> list[dict]:
    rng = random.Random(0)
    out = []
    for family, path in fonts().items():
        for size in SIZES:
            for blur in BLURS:
                for quality in QUALITIES:
                    for zoom in (4, 1) if (blur, quality) == (0.0, None) else (4,):
                        for _ in range(codes):
                            text, wrong = code(rng), code(rng)
                            image = crop(text, path, size, blur, quality, zoom, rng.randint(0, 10**9))
                            out.append(
                                {
                                    "font": family,
                                    "size": size,
                                    "blur": blur,
                                    "jpeg": quality or "none",
                                    "zoom": zoom,
                                    "text": text,
                                    "wrong": wrong,
                                    "image": image,
                                }
                            )
    return out


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms"


def compare_bindings(items: list[dict]) -> None:
    """(a) the same grey image through each binding (sparse text, `--psm 11`)."""
    engine = Tesseract()
    readers = {f"tesserocr ({engine.version})": engine.read}
    try:
        import pytesseract

        version = pytesseract.get_tesseract_version()
        readers[f"pytesseract (tesseract {version} binary)"] = lambda im: pytesseract.image_to_string(
            im, config=f"--psm 11 --tessdata-dir {find_tessdata()}"
        )
    except (ImportError, OSError, RuntimeError) as e:
        print(f"(a) pytesseract not measured: {type(e).__name__}: {e}")
    subset = items[:: max(1, len(items) // 240)]  # pytesseract is slow: a spread subset
    print(f"(a) bindings, plain grey, sparse text, on {len(subset)} crops:")
    for name, read in readers.items():
        seconds, hits = [], 0
        for item in subset:
            grey = prepare(item["image"], "grey")
            start = time.perf_counter()
            text = read(grey)
            seconds.append(time.perf_counter() - start)
            hits += supported(item["text"], text)
        print(f"    {name:<44} read {hits / len(subset):.3f} of the codes; {percentiles(seconds)} per image")


def reader_quality(items: list[dict]) -> None:
    """(b) the image check's reader, as the filter runs it: true claims borne out, false ones."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "run")
        reader = ImageText(store)
        rows: list[tuple[dict, bool, bool]] = []
        true_s: list[float] = []
        both_s: list[float] = []
        for item in items:
            ref = store.images.put_image(item["image"])
            start = time.perf_counter()
            true_ok = reader.bears(ref, item["text"])
            true_s.append(time.perf_counter() - start)
            rows.append((item, true_ok, reader.bears(ref, item["wrong"])))
            both_s.append(time.perf_counter() - start)
        reader.close()
    print(f"(b) the image check's reader ({len(VARIANTS)} variants as needed) on {len(rows)} crops:")
    print(
        f"    true claims borne out {np.mean([r[1] for r in rows]):.3f} (the rest would be false drops); "
        f"false claims borne out {np.mean([r[2] for r in rows]):.3f} (missed defects)"
    )
    print(f"    cost per crop, the true claim (a clean step): {percentiles(true_s)}")
    print(f"    cost per crop, both claims (a false one reads every variant): {percentiles(both_s)}")
    for key in ("font", "size", "blur", "jpeg", "zoom"):
        groups: dict[object, list[tuple[bool, bool]]] = defaultdict(list)
        for item, true_ok, false_ok in rows:
            groups[item[key]].append((true_ok, false_ok))
        cells = ", ".join(
            f"{value}: {np.mean([g[0] for g in group]):.2f}/{np.mean([g[1] for g in group]):.2f}"
            for value, group in groups.items()
        )
        print(f"    by {key} (true/false claims borne out): {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=3, help="codes per font, size, blur and quality")
    parser.add_argument("--skip-bindings", action="store_true")
    args = parser.parse_args()
    items = samples(args.codes)
    print(f"{len(items)} crops: fonts {sorted({i['font'] for i in items})}")
    if not args.skip_bindings:
        compare_bindings(items)
    reader_quality(items)


if __name__ == "__main__":
    main()
