"""Decoded-input cache: a cached load is indistinguishable from PIL's own, and it is really used.

In-process tests hook PIL in this interpreter (undone after each); the sandbox tests run the
zygote under bubblewrap and read the child's hit counter from inside the call.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from pipeline.config import CodeToolConfig
from stages.tools.base import ToolContext
from stages.tools.code import decode_cache
from stages.tools.code.code_tool import CodeTool
from stages.tools.code.fast_inputs import write_unfiltered_png
from stages.tools.code.isolation import bwrap_works

SIZE = (640, 480)


def pixels(seed: int = 3) -> np.ndarray:
    """Flat boxes over a noisy half: every file spans several of PIL's 64 KB read blocks."""
    rng = np.random.default_rng(seed)
    scene = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    scene[: SIZE[1] // 2] = rng.integers(0, 256, (SIZE[1] // 2, SIZE[0], 3))
    for _ in range(40):
        x, y = rng.integers(0, SIZE[0] - 20), rng.integers(0, SIZE[1] - 20)
        scene[y : y + rng.integers(4, 60), x : x + rng.integers(4, 60)] = rng.integers(0, 256, 3)
    return scene


def text_after_idat(png: bytes) -> bytes:
    """`png` with a tEXt chunk between its last IDAT and IEND (PIL reads it only when loading)."""
    body = b"late\x00after the pixels"
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png[:-12] + chunk + png[-12:]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Each kind of input the cache serves: PNG as saved, its filter-free copy, JPEG, palette."""
    root = tmp_path_factory.mktemp("inputs")
    image = Image.fromarray(pixels())
    out = {"png": root / "scene.png", "jpeg": root / "scene.jpg", "palette": root / "palette.png"}
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "before the pixels")
    image.save(out["png"], pnginfo=info)
    image.save(out["jpeg"], quality=90)
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=50).save(out["palette"], transparency=3)
    out["fast_png"] = root / "fast.png"
    assert write_unfiltered_png(out["png"], out["fast_png"], max_pixels=10**8)
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PNG")
    out["late_text"] = root / "late.png"
    out["late_text"].write_bytes(text_after_idat(buffer.getvalue()))
    return out


def observed(image: Image.Image) -> dict:
    """Everything a caller can see after a load."""
    access = image.load()
    return {
        "pixels": np.asarray(image).tobytes(),
        "mode": image.mode,
        "size": image.size,
        "format": image.format,
        "info": dict(image.info),
        "filename": image.filename,
        "palette": image.getpalette(),
        "text": dict(getattr(image, "text", {})),
        "access": (type(access).__name__, access[5, 7] if access is not None else None),
        "fp": image.fp,
        "readonly": image.readonly,
        "tile": image.tile,
    }


@pytest.fixture
def cache():
    hooked = decode_cache.install(max_bytes=64 << 20, min_pixels=1000)
    yield hooked
    decode_cache.uninstall()


def serving(cache: decode_cache.DecodeCache, paths: list[Path]) -> decode_cache.DecodeCache:
    assert cache.prefill([str(p) for p in paths]) == len(paths)
    cache.serve()
    return cache


@pytest.mark.parametrize("kind", ["png", "fast_png", "jpeg", "palette", "late_text"])
def test_cached_load_is_observably_identical(files, cache, kind):
    path = files[kind]
    assert path.stat().st_size > 65536  # the decoder is fed more than one block
    with Image.open(path) as fresh:
        want = observed(fresh)
    serving(cache, [path])
    with Image.open(path) as image:
        got = observed(image)
    assert cache.hits == 1  # the cached core was used (0 without the hook)
    assert got == want
    if kind == "late_text":
        assert got["text"]["late"] == "after the pixels"


def test_a_failing_lookup_never_breaks_a_load(files, cache, monkeypatch):
    """Whatever goes wrong inside the cache (a Pillow whose internals differ, a bug), the load
    decodes as usual: the hook must never be why teacher code cannot open its image."""
    path = files["png"]
    with Image.open(path) as fresh:
        want = observed(fresh)
    serving(cache, [path])

    def broken(image):
        raise AttributeError("'PngImageFile' object has no attribute '_im'")  # as Pillow 10 said

    monkeypatch.setattr(decode_cache, "_unloaded", broken)
    with Image.open(path) as image:
        assert observed(image) == want
    assert cache.hits == 0


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_file_object_position_matches_a_normal_load(files, cache, kind):
    path = files[kind]
    with open(path, "rb") as handle:
        fresh = Image.open(handle)
        fresh.load()
        want = handle.tell()
    serving(cache, [path])
    with open(path, "rb") as handle:
        image = Image.open(handle)
        image.load()
        assert handle.tell() == want and not handle.closed
    assert cache.hits == 1


def test_two_opens_in_one_process_do_not_alias(files, cache):
    path = files["png"]
    serving(cache, [path])
    first = Image.open(path)
    first.load()
    first.paste((255, 0, 255), (0, 0, 100, 100))
    second = Image.open(path)
    second.load()
    assert cache.hits == 1  # the second open decoded normally
    np.testing.assert_array_equal(np.asarray(second), pixels())
    assert first.getpixel((10, 10)) == (255, 0, 255)


def test_jpeg_draft_falls_back_to_a_normal_decode(files, cache):
    path = files["jpeg"]
    with Image.open(path) as fresh:
        fresh.draft("RGB", (SIZE[0] // 2, SIZE[1] // 2))
        want = observed(fresh)
    serving(cache, [path])
    with Image.open(path) as image:
        image.draft("RGB", (SIZE[0] // 2, SIZE[1] // 2))
        got = observed(image)
    assert cache.hits == 0
    assert got == want and got["size"] == (SIZE[0] // 2, SIZE[1] // 2)
    with Image.open(path) as plain:  # the entry stayed for a plain open
        plain.load()
    assert cache.hits == 1


def test_bounded_by_bytes_and_min_pixels(files, tmp_path):
    one = SIZE[0] * SIZE[1] * 4  # an RGB image takes 4 bytes a pixel in PIL
    cache = decode_cache.install(max_bytes=2 * one, min_pixels=1000)
    try:
        paths = []
        for i in range(4):
            paths.append(tmp_path / f"{i}.png")
            Image.fromarray(pixels(i)).save(paths[-1])
        assert cache.prefill([str(p) for p in paths]) == 4
        assert len(cache.entries) == 2 and cache.nbytes == 2 * one and cache.evicted == 2
        assert cache.prefill([str(p) for p in paths[2:]]) == 0  # still cached
        small = decode_cache.DecodeCache(max_bytes=2 * one, min_pixels=SIZE[0] * SIZE[1] + 1)
        assert small.prefill([str(paths[0])]) == 0 and not small.entries
    finally:
        decode_cache.uninstall()


def test_undecodable_file_is_skipped_not_fatal(tmp_path, cache):
    broken = tmp_path / "broken.png"
    good = io.BytesIO()
    Image.fromarray(pixels()).save(good, format="PNG")
    broken.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    assert cache.prefill([str(broken), str(tmp_path / "missing.png")]) == 0
    cache.serve()
    with pytest.raises(OSError), Image.open(broken) as image:
        image.load()


# ------------------------------------------------------------------------------ in the sandbox

sandboxed = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")
HITS = "import sys\nhits = sys.modules['sandbox_decode_cache'].active.hits\n"


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_tool(loop, **overrides) -> CodeTool:
    cfg = dict(workers=1, wall_s=10, cpu_s=5, memory_mb=512, decode_cache_min_pixels=1000, session=False)
    tool = CodeTool(CodeToolConfig(**(cfg | overrides)))
    loop.run_until_complete(tool.pool.start())
    return tool


def call(loop, tool, code: str, images: dict[str, Path], workdir: Path):
    return loop.run_until_complete(tool.run({"code": code}, ToolContext("t", workdir, images=images)))


@sandboxed
@pytest.mark.parametrize("session", [False, True])
def test_sandbox_edit_in_one_call_is_not_seen_by_the_next(loop, files, tmp_path, session):
    """Stateless: each call's child takes the zygote's pristine core. Session: the one child
    took it in its first cell; the next cell's open decodes the file normally."""
    tool = make_tool(loop, session=session)
    code = (
        "from PIL import Image\nim = Image.open(image_paths[0])\nprint(im.getpixel((3, 3)))\n"
        "im.paste((1, 2, 3), (0, 0, 50, 50))\n" + HITS + "print(hits)\n"
    )
    images = {"image_0.png": files["png"]}
    try:
        first = call(loop, tool, code, images, tmp_path / "a")
        second = call(loop, tool, code, images, tmp_path / "b")
    finally:
        loop.run_until_complete(tool.aclose())
    want = str(tuple(int(v) for v in pixels()[3, 3]))
    assert first.error is None and second.error is None, (first.text, second.text)
    assert first.text.splitlines() == [want, "1"]
    assert second.text.splitlines() == [want, "1"]  # the paste did not reach the zygote
    assert tool.stats()["decode_cache_decoded"] == 1


@sandboxed
def test_sandbox_two_opens_in_one_call_do_not_alias(loop, files, tmp_path):
    tool = make_tool(loop)
    code = (
        "from PIL import Image\na = Image.open(image_paths[0]); a.load()\n"
        "a.paste((9, 9, 9), (0, 0, 20, 20))\nb = Image.open(image_paths[0])\n"
        "print(a.getpixel((1, 1)), b.getpixel((1, 1)))\n" + HITS + "print(hits)\n"
    )
    try:
        obs = call(loop, tool, code, {"image_0.png": files["png"]}, tmp_path)
    finally:
        loop.run_until_complete(tool.aclose())
    want = str(tuple(int(v) for v in pixels()[1, 1]))
    assert obs.error is None, obs.text
    assert obs.text.splitlines() == [f"(9, 9, 9) {want}", "1"]


@sandboxed
def test_sandbox_knob_zero_turns_the_cache_off(loop, files, tmp_path):
    tool = make_tool(loop, decode_cache_mb=0)
    code = "import sys\nfrom PIL import Image\nImage.open(image_paths[0]).load()\nprint('sandbox_decode_cache' in sys.modules)\n"
    try:
        obs = call(loop, tool, code, {"image_0.png": files["png"]}, tmp_path)
    finally:
        loop.run_until_complete(tool.aclose())
    assert obs.text.strip() == "False" and tool.stats()["decode_cache_decoded"] == 0


@sandboxed
def test_sandbox_memory_headroom_unchanged_by_a_full_cache(loop, tmp_path):
    """A child may allocate memory_mb beyond what it inherits, however much the zygote caches."""
    big = []
    for i in range(3):  # 3 x 48 MB decoded
        big.append(tmp_path / f"big{i}.png")
        Image.fromarray(np.full((3000, 4000, 3), i, np.uint8)).save(big[-1], compress_level=1)
    tool = make_tool(loop, memory_mb=256, decode_cache_mb=200)
    fits = "x = bytearray(200 * 1024**2)\nprint('ok')\n"
    too_much = "x = bytearray(300 * 1024**2)\n"
    try:
        empty = [call(loop, tool, code, {}, tmp_path / "e") for code in (fits, too_much)]
        images = {f"image_{i}.png": path for i, path in enumerate(big)}
        full = [call(loop, tool, code, images, tmp_path / "f") for code in (fits, too_much)]
    finally:
        loop.run_until_complete(tool.aclose())
    assert tool.stats()["decode_cache_decoded"] == 3
    for results in (empty, full):
        assert results[0].error is None and results[0].text.strip() == "ok", results[0].text
        assert "MemoryError" in (results[1].error or ""), results[1].text


@sandboxed
def test_pool_sends_a_call_to_the_worker_holding_its_image(loop, files, tmp_path):
    tool = make_tool(loop, workers=2)
    pool = tool.pool
    code = "from PIL import Image\nImage.open(image_paths[0]).load()\n"
    try:
        loop.run_until_complete(pool.workers[0].lock.acquire())  # busy: the first call goes to w1
        call(loop, tool, code, {"image_0.png": files["png"]}, tmp_path / "a")
        pool.workers[0].lock.release()
        decoded = tool.stats()["decode_cache_decoded"]
        call(loop, tool, code, {"image_0.png": files["png"]}, tmp_path / "b")  # both free: w1 again
    finally:
        loop.run_until_complete(tool.aclose())
    stats = tool.stats()
    assert decoded == 1 and stats["decode_cache_decoded"] == 1 and stats["decode_cache_affine_calls"] == 1
