"""Decode-friendly input copies: the sandbox code reads the same pixels, the copy is made once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import CodeToolConfig
from stages.tools.base import ToolContext
from stages.tools.code.code_tool import CodeTool
from stages.tools.code.fast_inputs import FastInputs, write_unfiltered_png
from stages.tools.code.isolation import bwrap_works


def _photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Noisy gradients: compresses poorly, like a photograph."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(ramp, (height, width, 3))
    return np.clip(base + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)


def _render(width: int, height: int) -> np.ndarray:
    """Flat colour blocks: compresses well, like a world scene or a chart."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, :, 0] = 200
    pixels[:, width // 3 :, 1] = 90
    return pixels


@pytest.mark.parametrize(
    ("pixels", "mode"),
    [
        (_photo(640, 480), "RGB"),
        (_render(640, 480), "RGB"),
        (_photo(320, 240)[..., 0], "L"),
        (np.dstack([_photo(320, 240), np.full((240, 320), 128, np.uint8)]), "RGBA"),
    ],
)
def test_copy_has_identical_pixels_mode_and_size(tmp_path: Path, pixels: np.ndarray, mode: str) -> None:
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(pixels, mode).save(source)
    assert write_unfiltered_png(source, target, max_pixels=10**8)
    with Image.open(source) as a, Image.open(target) as b:
        assert (b.format, b.mode, b.size) == ("PNG", a.mode, a.size)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_ineligible_images_are_left_alone(tmp_path: Path) -> None:
    jpeg, palette, profiled = tmp_path / "a.jpg", tmp_path / "p.png", tmp_path / "icc.png"
    Image.fromarray(_photo(64, 64)).save(jpeg)
    Image.fromarray(_photo(64, 64)).convert("P").save(palette)
    Image.fromarray(_photo(64, 64)).save(profiled, icc_profile=b"\0" * 128)
    for source in (jpeg, palette, profiled):
        assert not write_unfiltered_png(source, tmp_path / "out.png", max_pixels=10**8)
    assert not (tmp_path / "out.png").exists()


def test_made_once_for_concurrent_rollouts_small_and_broken_images_pass_through(tmp_path: Path) -> None:
    big, small, broken = tmp_path / "big.png", tmp_path / "small.png", tmp_path / "broken.png"
    Image.fromarray(_photo(1200, 1000)).save(big)
    Image.fromarray(_photo(100, 100)).save(small)
    broken.write_bytes(big.read_bytes()[:5000])  # truncated: the header reads, the pixels do not
    cache = FastInputs(tmp_path / "cache", min_pixels=1_000_000, max_bytes=1 << 30, max_pixels=10**8)

    async def go():
        copies = await asyncio.gather(*(cache.for_sandbox(big) for _ in range(4)))
        return copies, await cache.for_sandbox(small), await cache.for_sandbox(broken)

    copies, small_out, broken_out = asyncio.run(go())
    assert len(set(copies)) == 1 and copies[0] != big and copies[0].parent == tmp_path / "cache"
    assert (cache.made, cache.reused) == (1, 3)
    assert small_out == small and broken_out == broken  # the code meets the original (and its error)


def test_least_recently_used_copies_are_deleted_past_the_byte_budget(tmp_path: Path) -> None:
    sources = []
    for i in range(3):
        sources.append(tmp_path / f"{i}.png")
        Image.fromarray(_photo(1000, 1000, seed=i)).save(sources[-1])
    cache = FastInputs(tmp_path / "cache", min_pixels=1, max_bytes=5_000_000, max_pixels=10**8)

    async def go():
        return [await cache.for_sandbox(s) for s in sources]

    copies = asyncio.run(go())  # photo-like: stored, 3 MB each, so only one fits the budget
    assert [c.exists() for c in copies] == [False, False, True]
    assert sum(p.stat().st_size for p in (tmp_path / "cache").iterdir()) <= 5_000_000


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")
def test_sandbox_code_sees_the_original_pixels_through_the_copy(tmp_path: Path) -> None:
    source = tmp_path / "scene.png"
    pixels = _photo(1280, 900)
    Image.fromarray(pixels).save(source)
    cfg = CodeToolConfig(workers=1, wall_s=10, cpu_s=5, fast_inputs_min_pixels=1_000_000)
    code = (
        "import hashlib\nfrom PIL import Image\n"
        "im = Image.open(image_paths[0])\n"
        "print(im.format, im.mode, im.size, hashlib.sha256(im.tobytes()).hexdigest())\n"
    )

    async def go():
        tool = CodeTool(cfg)
        try:
            ctx = ToolContext(trajectory_id="t", workdir=tmp_path / "w", images={"image_0.png": source})
            first = await tool.run({"code": code}, ctx)
            again = await tool.run({"code": code}, ctx)
            return first, again, tool.stats()
        finally:
            await tool.aclose()

    first, again, stats = asyncio.run(go())
    import hashlib

    expected = f"PNG RGB (1280, 900) {hashlib.sha256(pixels.tobytes()).hexdigest()}"
    assert first.error is None and first.text.strip() == expected == again.text.strip()
    assert (stats["fast_inputs_made"], stats["fast_inputs_reused"]) == (1, 1), json.dumps(stats)


def test_a_prefetched_copy_is_ready_for_the_first_call_and_a_cancelled_caller_spoils_nothing(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    Image.fromarray(_photo(1200, 1000, seed=1)).save(first)
    Image.fromarray(_photo(1200, 1000, seed=2)).save(second)
    cache = FastInputs(tmp_path / "cache", min_pixels=1_000_000, max_bytes=1 << 30, max_pixels=10**8)

    async def go():
        cache.prefetch(first)  # a trajectory starts: nothing waits for this
        await cache.aclose()  # ... and a teacher turn later the copy is there
        ready = cache._copies and next(iter(cache._copies.values()))[0]
        staged = await cache.for_sandbox(first)
        # a rollout cancelled while its copy is being made: the copy is still made and kept
        caller = asyncio.create_task(cache.for_sandbox(second))
        await asyncio.sleep(0)
        caller.cancel()
        await cache.aclose()
        return ready, staged, await cache.for_sandbox(second)

    ready, staged, after_cancel = asyncio.run(go())
    assert ready and staged == ready and staged != first
    assert after_cancel != second and after_cancel.parent == tmp_path / "cache"
    assert (cache.made, cache.reused) == (2, 2)
