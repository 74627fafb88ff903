"""The image check reads produced images with OCR: a thought's claimed text and colours must be
there. Real tesseract (skipped where `make setup` could not install it), real stored images."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from filters.base import CheckContext
from filters.image_claims import claims_in, colour_shares, shows_colour, supported
from filters.image_thought import ImageThoughtCheck
from filters.ocr import OcrUnavailable, Tesseract
from filters.run_checks import run_filter
from pipeline.commands.filter import summary_lines
from pipeline.config import FilterConfig
from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore
from stages.tools.registry import tool_table

TOOLS = tool_table()  # what the checks judge calls against


def _tesseract_missing() -> str | None:
    try:
        Tesseract()
    except OcrUnavailable as e:
        return str(e)
    return None


needs_ocr = pytest.mark.skipif(bool(_tesseract_missing()), reason=f"no tesseract: {_tesseract_missing()}")

CODE = "from PIL import Image\nim = Image.open('/input/image_0.png')\nim.crop((40, 40, 340, 140)).save('/output/c.png')"


def plate(text: str, *, size: int = 40, fill=(236, 214, 64), background=(70, 60, 90)) -> Image.Image:
    """A crop as a teacher's code makes it: a coloured plate with printed text, over a dark scene."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 160, bottom - top + 120), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((50, 40, right - left + 110, bottom - top + 80), fill=fill)
    draw.text((80 - left, 60 - top), text, font=font, fill=(25, 25, 30))
    return image


def texture(seed: int = 0) -> Image.Image:
    """Busy clutter with no text: blobs and strokes of random colours."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(24, 36, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((360, 240), Image.Resampling.BICUBIC).filter(ImageFilter.SMOOTH)


def crop_then(store: RunStore, image: Image.Image, thought: str, task: str = "t-1") -> Trajectory:
    scene = store.images.put_image(Image.new("RGB", (400, 200), (90, 90, 90)))
    produced = store.images.put_image(image)
    steps = [
        Step(
            index=0,
            think="The plate is tiny; I will crop it.",
            action="tool_call",
            tool_name="code",
            arguments=json.dumps({"code": CODE}),
            observation_text="saved c.png",
            observation_images=[produced],
        ),
        Step(index=1, think=thought, action="answer", answer="HE-9535"),
    ]
    return Trajectory(
        task_id=task,
        question="What code is on the plate?",
        images=[scene],
        steps=steps,
        final_answer="HE-9535",
    )


@needs_ocr
def test_claimed_text_must_be_what_ocr_reads_in_the_crop(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    check, ctx = ImageThoughtCheck(), CheckContext(tools=TOOLS, store=store)
    thought = "The enlarged crop reads HE-9535."
    assert check.run(crop_then(store, plate("HE-9535"), thought), ctx).keep
    other = check.run(crop_then(store, plate("KT-2741"), thought), ctx)
    assert not other.keep
    assert "'HE-9535'" in other.reason and "KT-2741" in other.reason  # the claim and what OCR read
    busy = check.run(crop_then(store, texture(), thought), ctx)
    assert not busy.keep and "claims to read 'HE-9535'" in busy.reason
    quoted = check.run(
        crop_then(store, plate("EXIT 12"), "The crop shows a sign reading 'EXPORT 1907'."), ctx
    )
    assert not quoted.keep and "EXPORT 1907" in quoted.reason
    summary = ctx.ocr_summary()
    assert summary["engine"].startswith("tesseract") and summary["claims_unsupported"] == 3


@needs_ocr
def test_an_honest_cannot_read_passes_and_readings_are_cached_by_image(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    check = ImageThoughtCheck()
    honest = "The crop shows only clutter; I cannot read any code there, so I will crop again."
    assert check.run(crop_then(store, texture(), honest), CheckContext(tools=TOOLS, store=store)).keep
    thought = "The enlarged crop reads HE-9535."
    first = CheckContext(tools=TOOLS, store=store)
    verdict = check.run(crop_then(store, texture(), thought), first)
    first_read = first.ocr_summary()["images_read"]
    again = CheckContext(tools=TOOLS, store=store)  # a re-filter: the readings come from RUN/cache/ocr.sqlite
    assert check.run(crop_then(store, texture(), thought), again) == verdict
    summary = again.ocr_summary()
    assert first_read > 0 and summary.get("images_read", 0) == 0 and summary["cache_hits"] == first_read


@needs_ocr
def test_ocr_confusions_case_and_spacing_are_forgiven() -> None:
    assert supported("HE-9535", "HE 9S3S")
    assert supported("he-9535", "HE—9535\n")
    assert supported("Main Street", "MAIN\nSTREET")
    assert not supported("HE-9535", "KT-2741")
    assert not supported("1907", "1967")


def test_claims_are_reading_claims_only() -> None:
    assert claims_in("The processed crop shows the plate's code clearly: WY-9767.").texts == ("WY-9767",)
    assert claims_in("The sign reads 'EXPORT 1907' in red letters.").texts == ("EXPORT 1907",)
    assert claims_in("The label says 1907.").texts == ("1907",)
    for prose in (
        "I will rotate the crop by 270 degrees and zoom in 4x.",
        "The crop (120, 40, 300, 200) of image_1.png shows 3 plates.",
        "There are 12 cars in the crop.",
        "I will search for 'Acme Corp' next.",
        "The code is too small to read at this size.",
        "I cannot read the text, it might say HE-9535.",
    ):
        assert not claims_in(prose).texts, prose
    assert claims_in("The crop shows a red sign above a yellow plate.").colours == ("red", "yellow")


def test_colour_claims_are_checked_against_the_crop(tmp_path: Path) -> None:
    yellow = colour_shares(plate("HE-9535", fill=(236, 214, 64)))
    assert shows_colour(yellow, "yellow", 0.02) and not shows_colour(yellow, "red", 0.02)
    store = RunStore(tmp_path / "run")
    check = ImageThoughtCheck()
    ctx = CheckContext(tools=TOOLS, store=store, config=FilterConfig(ocr=False))  # colours need no OCR
    blue = plate("HE-9535", fill=(40, 70, 220), background=(30, 40, 120))
    assert check.run(crop_then(store, blue, "The crop shows the blue plate."), ctx).keep
    red = check.run(crop_then(store, blue, "The crop shows the red sign clearly."), ctx)
    assert not red.keep and "claims a red object" in red.reason and "blue" in red.reason


def test_without_tesseract_the_check_falls_back_to_its_rules_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model folder with no model in it: tesseract cannot start, as on a machine without it."""
    store = RunStore(tmp_path / "run")
    thought = "The enlarged crop reads HE-9535."
    batch = [crop_then(store, texture(seed), thought, task=f"t-{seed}") for seed in range(3)]
    blank = store.images.put_image(Image.new("RGB", (300, 100), (250, 250, 250)))
    blank_crop = batch[0].model_copy(deep=True, update={"task_id": "t-blank"})
    blank_crop.steps[0].observation_images = [blank]
    store.write_records("raw", [*batch, blank_crop], Trajectory)
    empty = tmp_path / "no-model"
    empty.mkdir()
    with caplog.at_level(logging.WARNING, logger="trajforge.filter"):
        outcome = run_filter(store, FilterConfig(ocr_tessdata=str(empty)), progress=False, tools=TOOLS)
    warnings = [r for r in caplog.records if "OCR not available" in r.getMessage()]
    assert len(warnings) == 1 and "make setup" in warnings[0].getMessage()
    ocr = outcome.report["ocr"]
    assert ocr["engine"] is None and "eng.traineddata" in ocr["unavailable"]
    assert ocr["claims_unchecked"] == 3  # the blank crop's claim: dropped by the older rule first
    line = next(line for line in summary_lines(outcome.report) if "OCR" in line)
    assert "not available" in line and "3 text claims" in line
    assert sum(r["passed"] for r in outcome.rows) == 3  # the texture crops pass, as before OCR
    blank_row = next(r for r in outcome.rows if not r["passed"])
    assert any("near-uniform" in reason for reason in blank_row["reasons"])
