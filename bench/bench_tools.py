"""Tools benchmark: code-sandbox per-call overhead vs cold interpreters, and search cache hit rates.

Overhead = host-observed time of a call whose user code is `pass` (so it is all sandbox cost:
staging, fork, limits, output collection, IPC). Measured side by side in one run against
cold `python -c pass` and cold `python -c "import numpy, cv2, PIL.Image"` per call (what a
sandbox without a warm pool would pay at least, before any isolation), and a cold bwrap start.

    python bench/bench_tools.py [--calls 200] [--cold 20]
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
from stages.tools.code import CodeTool


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


def search_hit_rates(work: Path) -> dict:
    """Replays a trajectory-like query stream (repeats across rollouts) through a fresh cache."""
    from stages.tools.cache import ToolCache
    from stages.tools.search import ImageSearchTool, LocalImages, LocalText, TextSearchTool

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cold", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        overhead, crop = asyncio.run(warm_calls(args.calls, work))
        cold_pass = cold([sys.executable, "-c", "pass"], args.cold)
        cold_imports = cold([sys.executable, "-c", "import numpy, cv2, PIL.Image"], args.cold)
        rates = search_hit_rates(work)
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
    print(
        f"summary: {len(overhead) + len(crop)} sandbox calls, {rates['calls']} search calls in {rates['elapsed_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
