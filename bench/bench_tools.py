"""Tools benchmark: code-sandbox per-call overhead vs cold interpreters, search cache hit rates,
local image-search latency and top-1 (the v1 baseline it replaced is quoted in the README),
the sandbox CPU of a crop call with large PNG inputs staged as they are vs as filter-free copies,
of repeated crop calls on one input with the zygote's decode cache off vs on, and of a crop call
whose plain PNG save goes to PIL at level 1 vs the sandbox's fast writer (`--only png-saves`).

Overhead = host-observed time of a call whose user code is `pass` (so it is all sandbox cost:
staging, fork, limits, output collection, IPC). Measured side by side in one run against
cold `python -c pass` and cold `python -c "import numpy, cv2, PIL.Image"` per call (what a
sandbox without a warm pool would pay at least, before any isolation), and a cold bwrap start.

Image search: corpora of world-style emblems (300 = the default world, and 2,000), queries that
are crops of a cluttered scene holding an emblem at 50-130 px and rescaled, tinted copies; each
query is timed against the index.

    python bench/bench_tools.py [--calls 200] [--cold 20] [--image-queries 20] [--only image|fast-inputs|decode-cache|png-saves]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import CodeToolConfig, ToolsConfig
from stages.tools.base import ToolContext
from stages.tools.code.code_tool import CodeTool


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def cold(argv: list[str], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


async def warm_calls(n: int, work: Path) -> tuple[list[float], list[float]]:
    image = work / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(image)
    tool = CodeTool(CodeToolConfig(workers=1))
    await tool.pool.start()
    ctx = ToolContext("bench", work, images={"image_0.png": image})
    overhead, crop = [], []
    try:
        for _ in range(10):  # warm-up
            await tool.run({"code": "pass"}, ctx)
        for _ in range(n):
            obs = await tool.run({"code": "pass"}, ctx)
            overhead.append(obs.latency_s)
        for _ in range(max(10, n // 10)):
            code = "from PIL import Image\nImage.open(image_paths[0]).crop((100, 100, 400, 300)).save('/output/c.png')"
            ctx.images = {"image_0.png": image}
            obs = await tool.run({"code": code}, ctx)
            assert obs.error is None, obs.error
            crop.append(obs.latency_s)
    finally:
        await tool.aclose()
    return overhead, crop


def fast_input_images(work: Path) -> dict[str, Path]:
    """2560x2048 PNGs (PIL's default compression) of the two kinds seeds come in."""
    rng = np.random.default_rng(1)
    render = np.zeros((2048, 2560, 3), np.uint8)  # flat regions and hard edges, like a world scene
    for _ in range(300):
        x, y = rng.integers(0, 2400), rng.integers(0, 1900)
        render[y : y + rng.integers(8, 150), x : x + rng.integers(8, 160)] = rng.integers(0, 256, 3)
    ramp = np.linspace(0, 200, 2560, dtype=np.float32)[None, :, None]
    photo = np.clip(ramp + rng.normal(0, 6, (2048, 2560, 3)), 0, 255).astype(np.uint8)  # sensor noise
    paths = {}
    for name, pixels in (("render", render), ("photo", photo)):
        paths[name] = work / f"{name}.png"
        Image.fromarray(pixels).save(paths[name])
    return paths


CROP_CODE = (
    "from PIL import Image\nimg = Image.open(image_paths[0])\n"
    "crop = img.crop((532, 1657, 685, 1760)).resize((612, 412), Image.Resampling.LANCZOS)\n"
    "crop.save('/output/crop.png')\n"
)


async def alternated_crop_cpu(
    work: Path,
    image: Path | None,
    configs: dict[str, CodeToolConfig],
    n: int,
    *,
    code: str = CROP_CODE,
    warm: dict[str, Path] | None = None,
) -> dict:
    """Sandbox CPU per call of `code` (default: an R1V4-style crop call: re-open the input, crop,
    zoom, save) for each pool, one pool per config, calls alternated so load swings hit every
    pool alike; `warm`: the images of the first, unmeasured call (default: the call's)."""
    images = {"image_0.png": image} if image else {}
    tools = {label: CodeTool(cfg) for label, cfg in configs.items()}
    try:
        for tool in tools.values():
            await tool.pool.start()
            await tool.run({"code": code}, ToolContext("warm", work / "w", images=warm or images))
        before = {label: tool.stats()["sandbox_cpu_s"] for label, tool in tools.items()}
        for i in range(n):
            for tool in tools.values():
                obs = await tool.run({"code": code}, ToolContext(f"c{i}", work / f"c{i}", images=images))
                assert obs.error is None, obs.error
        return {label: (tool.stats()["sandbox_cpu_s"] - before[label]) / n for label, tool in tools.items()}
    finally:
        for tool in tools.values():
            await tool.aclose()


async def _side_by_side(
    work: Path, images: dict[str, Path], configs: dict[str, CodeToolConfig], n: int
) -> list[dict]:
    """Per image: sandbox CPU per crop call under each of two configs (calls alternated), and the
    second's ratio to the first."""
    first, second = configs
    rows = []
    for kind, image in images.items():
        cpu = await alternated_crop_cpu(work, image, configs, n)
        rows.append(
            {
                "image": kind,
                "bytes": image.stat().st_size,
                f"{first}_ms": round(cpu[first] * 1000, 1),
                f"{second}_ms": round(cpu[second] * 1000, 1),
                "ratio": round(cpu[second] / cpu[first], 3),
            }
        )
    return rows


async def fast_input_crops(work: Path, n: int) -> list[dict]:
    """Crop call with the large PNG input staged as it is vs as its filter-free copy (decode
    cache off in both, so the child decodes)."""
    configs = {
        label: CodeToolConfig(workers=1, fast_inputs_min_pixels=threshold, decode_cache_mb=0)
        for label, threshold in (("as_is", 0), ("fast_copy", 1_000_000))
    }
    return await _side_by_side(work, fast_input_images(work), configs, n)


async def decode_cache_crops(work: Path, n: int) -> list[dict]:
    """Repeated crop calls on one 2560x2048 input (render PNG, photo PNG, photo JPEG q90) with the
    zygote's decode cache off vs on; fast copies on in both (the default)."""
    images = fast_input_images(work)
    images["photo_jpeg"] = work / "photo.jpg"
    Image.open(images["photo"]).save(images["photo_jpeg"], quality=90)
    configs = {"off": CodeToolConfig(workers=1, decode_cache_mb=0), "on": CodeToolConfig(workers=1)}
    return await _side_by_side(work, images, configs, n)


async def empty_call_full_cache(work: Path, n: int) -> dict:
    """Sandbox CPU of a `pass` call (fork, wait, sweep) with eight 2560x2048 scenes (168 MB)
    decoded in the zygote vs the cache off: what a bigger zygote adds to every fork."""
    render = fast_input_images(work)["render"]
    scenes = {}
    for i in range(8):
        scenes[f"image_{i}.png"] = work / f"scene{i}.png"
        Image.open(render).rotate(i * 45).save(scenes[f"image_{i}.png"], compress_level=1)
    configs = {"off": CodeToolConfig(workers=1, decode_cache_mb=0), "on": CodeToolConfig(workers=1)}
    cpu = await alternated_crop_cpu(work, None, configs, n, code="pass", warm=scenes)
    return {label: round(value * 1000, 2) for label, value in cpu.items()}


async def png_save_crops(work: Path, n: int) -> list[dict]:
    """Sandbox CPU and file size of a crop call whose save goes to PIL at level 1 (what every
    plain save did before: `compress_level=1` still takes that path) vs the plain save's fast
    path (`png_encode`: libpng, level 1, the "up" row filter); calls alternated in one pool."""
    codes = {
        "pil_level1": CROP_CODE.replace("'/output/crop.png'", "'/output/crop.png', compress_level=1"),
        "fast": CROP_CODE,
    }
    rows = []
    for kind, image in fast_input_images(work).items():
        tool = CodeTool(CodeToolConfig(workers=1))
        cpu = dict.fromkeys(codes, 0.0)
        size = dict.fromkeys(codes, 0)
        try:
            await tool.run(
                {"code": CROP_CODE}, ToolContext("warm", work / "w", images={"image_0.png": image})
            )
            for i in range(n):
                for label, code in codes.items():
                    before = tool.stats()["sandbox_cpu_s"]
                    ctx = ToolContext(f"{label}{i}", work / f"{label}{i}", images={"image_0.png": image})
                    obs = await tool.run({"code": code}, ctx)
                    assert obs.error is None, obs.error
                    cpu[label] += tool.stats()["sandbox_cpu_s"] - before
                    size[label] = Path(obs.images[0]).stat().st_size
        finally:
            await tool.aclose()
        rows.append(
            {
                "image": kind,
                **{f"{label}_ms": round(cpu[label] / n * 1000, 1) for label in codes},
                "cpu_ratio": round(cpu["fast"] / cpu["pil_level1"], 3),
                **{f"{label}_bytes": size[label] for label in codes},
                "size_ratio": round(size["fast"] / size["pil_level1"], 3),
            }
        )
    return rows


def search_hit_rates(work: Path) -> dict:
    """Replays a trajectory-like query stream (repeats across rollouts) through a fresh cache."""
    from stages.tools.cache import ToolCache
    from stages.tools.search.search_tools import ImageSearchTool, LocalImages, LocalText, TextSearchTool

    corpus = work / "corpus"
    (corpus / "img").mkdir(parents=True)
    rng = np.random.default_rng(1)
    with (corpus / "pages.jsonl").open("w") as pages, (corpus / "images.jsonl").open("w") as images:
        for i in range(200):
            words = " ".join(f"w{int(v)}" for v in rng.integers(0, 500, 60))
            url = f"http://world.trajforge.local/wiki/e{i}"
            pages.write(json.dumps({"url": url, "title": f"Entity {i}", "text": words}) + "\n")
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).resize((192, 192)).save(
                corpus / "img" / f"{i}.png"
            )
            images.write(json.dumps({"path": f"img/{i}.png", "page_url": url, "title": f"Entity {i}"}) + "\n")
    cfg = ToolsConfig()
    text = TextSearchTool(LocalText(corpus, None), ToolCache(work / "cache.sqlite"), cfg.search.top_k)
    image = ImageSearchTool(LocalImages(corpus, None), ToolCache(work / "cache.sqlite"), cfg.search.top_k)
    ctx = ToolContext("bench", work)
    for i in range(20):
        ctx.register_image(corpus / "img" / f"{i}.png")
    # 4 rollouts per task (R1V4's setting) over 50 tasks, each issuing 2 text queries and 1 image query,
    # with light query rewording across rollouts (case/whitespace) that the normaliser absorbs.
    start = time.perf_counter()
    for task in range(50):
        for rollout in range(4):
            q = f"w{task} w{task + 1}" if rollout % 2 == 0 else f"  W{task}   w{task + 1} "
            asyncio.run(text.run({"queries": [q, f"entity {task} w{task * 3}"]}, ctx))
            asyncio.run(image.run({"image_paths": [f"image_{task % 20}.png"]}, ctx))
    elapsed = time.perf_counter() - start
    return {"text": text.stats(), "image": image.stats(), "calls": 400, "elapsed_s": elapsed}


def image_corpus(root: Path, size: int) -> None:
    from world.images import draw_emblem

    (root / "img").mkdir(parents=True)
    with (root / "images.jsonl").open("w") as records:
        for seed in range(size):
            draw_emblem(seed, 128).save(root / "img" / f"{seed}.png", compress_level=1)
            url = f"http://world.trajforge.local/wiki/e{seed}"
            records.write(
                json.dumps({"path": f"img/{seed}.png", "page_url": url, "title": f"E{seed}"}) + "\n"
            )


def image_queries(work: Path, size: int, count: int) -> list[tuple[Path, str]]:
    """Half crops of a cluttered scene holding an emblem at 50-130 px, half rescaled tinted copies."""
    from PIL import ImageFilter

    from world.images import draw_emblem

    rng = np.random.default_rng(size)
    queries = []
    for number in range(count):
        seed = int(rng.integers(0, size))
        emblem = draw_emblem(seed, 256)
        if number % 2 == 0:
            noise = rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)
            scene = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3))
            side = int(rng.integers(50, 130))
            x, y = (int(v) for v in rng.integers(150, 450, 2))
            scene.paste(emblem.resize((side, side)), (x, y))
            m = rng.integers(0, side // 2 + 1, 4)
            image = scene.crop((x - m[0], y - m[1], x + side + m[2], y + side + m[3]))
        else:
            side = int(rng.integers(90, 700))
            tint = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(0, 256, 3)))
            image = Image.blend(emblem.resize((side, side)), tint, 0.1)
        path = work / f"q{size}-{number}.png"
        image.save(path)
        queries.append((path, f"/e{seed}"))
    return queries


def image_search_latency(work: Path, sizes: list[int], count: int) -> list[dict]:
    from stages.tools.search.image_index import LocalImageIndex

    rows = []
    for size in sizes:
        corpus = work / f"images{size}"
        image_corpus(corpus, size)
        indexes = {"now": LocalImageIndex(corpus, work / f"idx-{size}")}
        queries = image_queries(work, size, count)
        timings = {name: [] for name in indexes}
        correct = dict.fromkeys(indexes, 0)
        for name, index in indexes.items():  # build (timed apart) and warm up
            start = time.perf_counter()
            index.search(queries[0][0])
            timings[name + "_build"] = time.perf_counter() - start
        for path, link in queries:
            for name, index in indexes.items():
                start = time.perf_counter()
                hits = index.search(path, k=5)
                timings[name].append(time.perf_counter() - start)
                correct[name] += bool(hits) and hits[0].link.endswith(link)
        rows.append({"size": size, "queries": len(queries), "timings": timings, "correct": correct})
    return rows


def print_fast_rows(rows: list[dict]) -> None:
    for r in rows:
        print(
            f"crop call on a 2560x2048 {r['image']} PNG ({r['bytes']} B), sandbox CPU: input as is "
            f"{r['as_is_ms']} ms, filter-free copy {r['fast_copy_ms']} ms -> ratio {r['ratio']}"
        )


def print_decode_rows(rows: list[dict]) -> None:
    for r in rows:
        print(
            f"repeated crop calls on a 2560x2048 {r['image']} ({r['bytes']} B), sandbox CPU per call: "
            f"decode cache off {r['off_ms']} ms, on {r['on_ms']} ms -> ratio {r['ratio']}"
        )


def print_image_rows(rows: list[dict]) -> None:
    ms = 1000
    for row in rows:
        t, c, n = row["timings"], row["correct"], row["queries"]
        now = statistics.median(t["now"])
        print(
            f"image_search {row['size']} images, {n} queries: median {now * ms:.1f} ms p95 "
            f"{pct(t['now'], 95) * ms:.1f} ms top-1 {c['now']}/{n} (index build + first query "
            f"{t['now_build']:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--image-queries", type=int, default=20)
    parser.add_argument("--image-sizes", default="300,2000")
    parser.add_argument("--only", choices=["image", "fast-inputs", "decode-cache", "png-saves"], default=None)
    args = parser.parse_args()
    sizes = [int(v) for v in args.image_sizes.split(",")]
    if args.only == "fast-inputs":
        with tempfile.TemporaryDirectory() as tmp:
            rows = asyncio.run(fast_input_crops(Path(tmp), 20))
        print_fast_rows(rows)
        return
    if args.only == "png-saves":
        with tempfile.TemporaryDirectory() as tmp:
            rows = asyncio.run(png_save_crops(Path(tmp), 30))
        for row in rows:
            print(json.dumps(row))
        print(
            f"summary: {len(rows) * 60} crop calls; sandbox CPU fast / PIL level 1: {[r['cpu_ratio'] for r in rows]}"
        )
        return
    if args.only == "decode-cache":
        with tempfile.TemporaryDirectory() as tmp:
            rows = asyncio.run(decode_cache_crops(Path(tmp), 20))
            empty = asyncio.run(empty_call_full_cache(Path(tmp), 100))
        print_decode_rows(rows)
        print(
            f"`pass` call, sandbox CPU: 168 MB decoded in the zygote {empty['on']} ms, cache off {empty['off']} ms"
        )
        return
    if args.only == "image":
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            rows = image_search_latency(Path(tmp), sizes, args.image_queries)
        print_image_rows(rows)
        print(
            f"summary: {sum(r['queries'] for r in rows)} image searches in {time.perf_counter() - start:.1f} s"
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        overhead, crop = asyncio.run(warm_calls(args.calls, work))
        cold_pass = cold([sys.executable, "-c", "pass"], args.cold)
        cold_imports = cold([sys.executable, "-c", "import numpy, cv2, PIL.Image"], args.cold)
        rates = search_hit_rates(work)
        image_rows = image_search_latency(work, sizes, args.image_queries)
        fast_rows = asyncio.run(fast_input_crops(work, 20))
        decode_rows = asyncio.run(decode_cache_crops(work, 20))
    ms = 1000
    print(
        f"code tool, warm pool, `pass` ({len(overhead)} calls): median {statistics.median(overhead) * ms:.1f} ms, "
        f"p95 {pct(overhead, 95) * ms:.1f} ms"
    )
    print(
        f"code tool, warm pool, 1024px crop+save ({len(crop)} calls): median {statistics.median(crop) * ms:.1f} ms"
    )
    print(
        f"cold `python -c pass` ({args.cold}): median {statistics.median(cold_pass) * ms:.1f} ms, "
        f"p95 {pct(cold_pass, 95) * ms:.1f} ms"
    )
    print(
        f"cold `python -c 'import numpy, cv2, PIL'` ({args.cold}): median {statistics.median(cold_imports) * ms:.1f} ms"
    )
    print(
        f"ratio warm/cold-python  median {statistics.median(overhead) / statistics.median(cold_pass):.3f}, "
        f"p95 {pct(overhead, 95) / pct(cold_pass, 95):.3f}"
    )
    print(
        f"ratio warm/cold-imports median {statistics.median(overhead) / statistics.median(cold_imports):.3f}"
    )
    print(f"goal: median overhead <= 30 ms -> {'met' if statistics.median(overhead) <= 0.030 else 'NOT met'}")
    t, i = rates["text"], rates["image"]
    print(
        f"text_search cache: {t['hits']} hits / {t['hits'] + t['misses']} lookups = {t['hit_rate']:.0%} "
        f"({t['api_calls']} backend calls)"
    )
    print(
        f"image_search cache: {i['hits']} hits / {i['hits'] + i['misses']} lookups = {i['hit_rate']:.0%} "
        f"({i['api_calls']} backend calls)"
    )
    print_image_rows(image_rows)
    print_fast_rows(fast_rows)
    print_decode_rows(decode_rows)
    print(
        f"summary: {len(overhead) + len(crop)} sandbox calls, {rates['calls']} search calls in {rates['elapsed_s']:.1f} s, "
        f"{sum(r['queries'] for r in image_rows) * 2} image searches (v1 and now)"
    )


if __name__ == "__main__":
    main()
