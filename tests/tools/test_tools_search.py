"""Search tools: local BM25 and perceptual-hash backends over a generated corpus, live backends
up to the network boundary (faked transport), numbered results and the persistent cache."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from stages.tools.base import ToolContext
from stages.tools.cache import ToolCache
from stages.tools.search.search_tools import (
    DdgsText,
    ImageSearchTool,
    LocalImages,
    LocalText,
    SerperClient,
    SerperLens,
    SerperText,
    TextSearchTool,
)

TOPICS = {
    "velmora-lighthouse": (
        "Velmora Lighthouse",
        "The Velmora Lighthouse stands on basalt cliffs. It was lit in 1871 by engineer Oskar Brandt.",
    ),
    "quillon-river": (
        "Quillon River",
        "The Quillon River drains the Harrow basin. Its delta hosts flamingo colonies every spring.",
    ),
    "astrid-fenwick": (
        "Astrid Fenwick",
        "Astrid Fenwick was a cartographer who mapped the Quillon River delta in 1903.",
    ),
    "orbis-observatory": (
        "Orbis Observatory",
        "The Orbis Observatory houses a 2.4 metre telescope built by Kessler Optics.",
    ),
}


def entity_image(seed: int) -> Image.Image:
    rng = np.random.default_rng(1000 + seed)
    image = Image.new("RGB", (256, 256), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.integers(0, 200, 2)
        w, h = rng.integers(20, 120, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h), fill=colour)
    return image


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "images").mkdir()
    with (root / "pages.jsonl").open("w") as pages:
        for slug, (title, text) in TOPICS.items():
            url = f"http://world.trajforge.local/wiki/{slug}"
            pages.write(json.dumps({"url": url, "title": title, "text": text}) + "\n")
        pages.write("not json\n")
    with (root / "images.jsonl").open("w") as images:
        for seed in range(40):
            entity_image(seed).save(root / "images" / f"e{seed}.png")
            slug = list(TOPICS)[seed % len(TOPICS)] if seed < 4 else f"entity-{seed}"
            images.write(
                json.dumps(
                    {
                        "path": f"images/e{seed}.png",
                        "page_url": f"http://world.trajforge.local/wiki/{slug}",
                        "title": f"Entity {seed}",
                    }
                )
                + "\n"
            )
    return root


def run(coro):
    return asyncio.run(coro)


def ctx_with(tmp_path: Path, *images: Image.Image) -> ToolContext:
    ctx = ToolContext(trajectory_id="t", workdir=tmp_path)
    for index, image in enumerate(images):
        path = tmp_path / f"image_{index}.png"
        image.save(path)
        ctx.register_image(path)
    return ctx


def test_local_text_search_ranks_and_formats(corpus, tmp_path):
    tool = TextSearchTool(LocalText(corpus, None), ToolCache(tmp_path / "c.sqlite"), top_k=3)
    obs = run(
        tool.run(
            {"queries": ["who mapped the Quillon delta", "telescope observatory"]}, ToolContext("t", tmp_path)
        )
    )
    assert obs.error is None
    first, second = obs.text.split("\n\n")
    assert first.splitlines()[0] == 'Results for "who mapped the Quillon delta":'
    assert first.splitlines()[1] == "1. Astrid Fenwick"
    assert "Link: http://world.trajforge.local/wiki/astrid-fenwick" in first
    assert "cartographer" in first
    assert second.splitlines()[1] == "1. Orbis Observatory"


def test_text_index_is_persistent_and_reused_across_processes(corpus):
    run(LocalText(corpus, None).search("lighthouse", 1))
    built = sorted(p.name for p in (corpus / "index").glob("text-*"))
    assert len(built) == 1
    code = (
        "import sys; from pathlib import Path; from stages.tools.search.text_index import LocalTextIndex\n"
        "import stages.tools.search.text_index as m\n"
        "m.build_text_index = lambda *a: (_ for _ in ()).throw(SystemExit('rebuilt'))\n"
        f"print(LocalTextIndex(Path({str(corpus)!r})).search('basalt cliffs', 1)[0].title)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert out.stdout.strip() == "Velmora Lighthouse", out.stderr[-500:]


def test_text_index_builds_in_shards_and_merges_their_hits(corpus, tmp_path, monkeypatch):
    """Build memory is one shard's: a corpus of several shards finds what one index finds."""
    import stages.tools.search.text_index as text_index

    queries = ["who mapped the Quillon delta", "telescope observatory", "basalt cliffs lighthouse"]
    whole = text_index.LocalTextIndex(corpus, tmp_path / "whole")
    expected = [[h.title for h in whole.search(query, 1)] for query in queries]
    monkeypatch.setattr(text_index, "SHARD_PAGES", 2)
    sharded = text_index.LocalTextIndex(corpus, tmp_path / "sharded")
    assert [[h.title for h in sharded.search(query, 1)] for query in queries] == expected
    assert len(list((tmp_path / "whole").glob("text-v2-*/shard-*"))) == 1
    assert sharded.search("who mapped the Quillon delta", 1)[0].title == "Astrid Fenwick"
    shards = list((tmp_path / "sharded").glob("text-v2-*/shard-*"))
    assert len(shards) == -(-len(TOPICS) // 2) > 1


def test_first_searches_from_many_threads_all_find_results(corpus):
    """The first searches of a run arrive together from worker threads; none may see a
    half-loaded index (an empty result there was cached for every rollout of the task)."""
    from concurrent.futures import ThreadPoolExecutor

    from stages.tools.search.text_index import LocalTextIndex

    for _ in range(3):
        index = LocalTextIndex(corpus)  # fresh: loads on first use
        with ThreadPoolExecutor(16) as pool:
            found = list(pool.map(lambda _, index=index: len(index.search("basalt cliffs", 3)), range(16)))
        assert all(found), found


def test_text_cache_hits_by_normalised_query(corpus, tmp_path):
    cache_path = tmp_path / "cache.sqlite"
    tool = TextSearchTool(LocalText(corpus, None), ToolCache(cache_path), top_k=2)
    ctx = ToolContext("t", tmp_path)
    first = run(tool.run({"queries": "Velmora  Lighthouse"}, ctx))  # a single string is accepted
    second = run(tool.run({"queries": ["velmora lighthouse"]}, ctx))
    assert first.text.splitlines()[1:] == second.text.splitlines()[1:]
    assert tool.stats()["hits"] == 1 and tool.stats()["misses"] == 1
    fresh = TextSearchTool(LocalText(corpus, None), ToolCache(cache_path), top_k=2)  # another process
    run(fresh.run({"queries": ["VELMORA lighthouse "]}, ctx))
    assert fresh.stats()["hits"] == 1 and fresh.stats()["api_calls"] == 0


@pytest.mark.parametrize(
    "arguments", [{}, {"queries": []}, {"queries": [1, 2]}, {"query": "x"}, {"queries": [""]}]
)
def test_text_search_bad_arguments(corpus, tmp_path, arguments):
    tool = TextSearchTool(LocalText(corpus, None), ToolCache(None), top_k=2)
    obs = run(tool.run(arguments, ToolContext("t", tmp_path)))
    assert obs.error and "queries" in obs.error and obs.text == ""


def scene_with(entity: Image.Image, size: int, at: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    scene = Image.fromarray(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(3)
    )
    scene.paste(entity.resize((size, size)), at)
    return scene


@pytest.mark.parametrize("seed", [3, 11, 26])
def test_image_search_finds_entity_in_crop_of_larger_scene(corpus, tmp_path, seed):
    x, y, size = 500, 300, 72  # the entity appears at ~72 px inside a 1200x900 scene
    scene = scene_with(entity_image(seed), size, (x, y), seed)
    crop = scene.crop((x - 20, y - 15, x + size + 25, y + size + 10))
    tool = ImageSearchTool(LocalImages(corpus, None), ToolCache(None), top_k=3)
    obs = run(tool.run({"image_paths": ["image_1.png"]}, ctx_with(tmp_path, scene, crop)))
    assert obs.error is None
    lines = obs.text.splitlines()
    assert lines[0] == "Results for image_1.png:"
    assert lines[1] == f"1. Entity {seed}"
    assert lines[3] == f"   Image: http://world.trajforge.local/images/e{seed}.png"
    assert str(corpus) not in obs.text  # hits carry web addresses, never the host's files


def test_image_search_rescaled_copy_and_sandbox_path(corpus, tmp_path):
    tool = ImageSearchTool(LocalImages(corpus, None), ToolCache(None), top_k=1)
    ctx = ctx_with(tmp_path, entity_image(7).resize((613, 613)), entity_image(8).resize((97, 97)))
    obs = run(tool.run({"image_paths": ["/input/image_0.png", "image_1.png"]}, ctx))
    assert "1. Entity 7" in obs.text.split("\n\n")[0]
    assert "1. Entity 8" in obs.text.split("\n\n")[1]


def test_image_search_on_a_result_url_resolves_it_to_the_corpus_file(corpus, tmp_path):
    """A later search on an image an earlier search showed: the tool reads the file behind the URL."""
    tool = ImageSearchTool(LocalImages(corpus, None), ToolCache(None), top_k=1)
    ctx = ctx_with(tmp_path, entity_image(5).resize((300, 300)))
    first = run(tool.run({"image_paths": ["image_0.png"]}, ctx))
    url = first.text.splitlines()[3].removeprefix("   Image: ")
    assert url == "http://world.trajforge.local/images/e5.png"
    again = run(tool.run({"image_paths": [url]}, ctx))
    assert again.error is None and again.text.splitlines()[:2] == [f"Results for {url}:", "1. Entity 5"]
    unknown = run(tool.run({"image_paths": ["http://world.trajforge.local/images/nope.png"]}, ctx))
    assert unknown.error and "not an image this search backend returned" in unknown.error


def test_image_url_from_record_or_page_origin():
    from stages.tools.search.local_corpus import image_url

    page = "https://wiki.example.org/wiki/Thing"
    assert image_url({"path": "images/a.png", "page_url": page}) == "https://wiki.example.org/images/a.png"
    own = {"path": "images/a.png", "page_url": page, "url": "https://cdn.example.org/a.png"}
    assert image_url(own) == "https://cdn.example.org/a.png"
    assert image_url({"path": "images/a.png", "page_url": "/srv/a.html"}) == ""  # no web host: no image line


def test_image_search_rejects_unrelated_image_and_unknown_names(corpus, tmp_path):
    noise = Image.fromarray(np.random.default_rng(5).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    tool = ImageSearchTool(LocalImages(corpus, None), ToolCache(None), top_k=3)
    ctx = ctx_with(tmp_path, noise)
    assert run(tool.run({"image_paths": ["image_0.png"]}, ctx)).text.endswith("No results found.")
    obs = run(tool.run({"image_paths": ["image_9.png"]}, ctx))
    assert obs.error and "image_0.png" in obs.error


def test_image_cache_keyed_by_perceptual_hash(corpus, tmp_path):
    tool = ImageSearchTool(LocalImages(corpus, None), ToolCache(tmp_path / "c.sqlite"), top_k=1)
    image = entity_image(2)
    ctx = ctx_with(tmp_path, image, image.copy())  # same pixels, different file
    run(tool.run({"image_paths": ["image_0.png"]}, ctx))
    run(tool.run({"image_paths": ["image_1.png"]}, ctx))
    assert tool.stats()["hits"] == 1 and tool.stats()["api_calls"] == 1


# ------------------------------------------------------------------------------ live backends, faked


def test_serper_text_and_lens_through_fake_transport(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SERPER_KEY", "sk-test")
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers["X-API-KEY"], json.loads(request.content)))
        if request.url.path == "/search":
            return httpx.Response(
                200, json={"organic": [{"title": "Hit", "link": "https://e.org/a", "snippet": "about a"}]}
            )
        return httpx.Response(
            200,
            json={
                "organic": [
                    {
                        "title": "Lens hit",
                        "link": "https://e.org/b",
                        "imageUrl": "https://e.org/b.jpg",
                        "source": "e.org",
                    }
                ]
            },
        )

    transport = httpx.MockTransport(handler)
    client = SerperClient("TEST_SERPER_KEY", transport=transport)
    text_tool = TextSearchTool(SerperText(client), ToolCache(None), top_k=3)
    obs = run(text_tool.run({"queries": ["q one"]}, ToolContext("t", tmp_path)))
    assert obs.text.splitlines()[1:4] == ["1. Hit", "   Link: https://e.org/a", "   Snippet: about a"]
    lens = SerperLens(
        SerperClient("TEST_SERPER_KEY", transport=transport), "https://img.example.org/pub", tmp_path / "pub"
    )
    ctx = ctx_with(tmp_path, entity_image(1))
    obs = run(ImageSearchTool(lens, ToolCache(None)).run({"image_paths": ["image_0.png"]}, ctx))
    assert "1. Lens hit" in obs.text and "Image: https://e.org/b.jpg" in obs.text
    path, key, payload = seen[-1]
    assert path == "/lens" and key == "sk-test"
    published = payload["url"].rsplit("/", 1)[1]
    assert (
        payload["url"].startswith("https://img.example.org/pub/") and (tmp_path / "pub" / published).exists()
    )


def test_serper_errors_are_observations(tmp_path, monkeypatch):
    monkeypatch.delenv("MISSING_KEY", raising=False)
    tool = TextSearchTool(
        SerperText(SerperClient("MISSING_KEY", transport=httpx.MockTransport(lambda r: httpx.Response(500)))),
        ToolCache(None),
    )
    obs = run(tool.run({"queries": ["x"]}, ToolContext("t", tmp_path)))
    assert obs.error and "MISSING_KEY" in obs.error
    monkeypatch.setenv("MISSING_KEY", "k")
    obs = run(tool.run({"queries": ["x"]}, ToolContext("t", tmp_path)))
    assert obs.error and "500" in obs.error
    lens = SerperLens(SerperClient("MISSING_KEY"), None, tmp_path / "pub")
    obs = run(
        ImageSearchTool(lens, ToolCache(None)).run(
            {"image_paths": ["image_0.png"]}, ctx_with(tmp_path, entity_image(0))
        )
    )
    assert obs.error and "public_image_base_url" in obs.error


def test_ddgs_backend_maps_fields(tmp_path):
    class FakeDDGS:
        def text(self, query, max_results):
            return [{"title": f"T {query}", "href": "https://d.org", "body": "body"}] * 7

    tool = TextSearchTool(DdgsText(client_factory=FakeDDGS), ToolCache(None), top_k=2)
    obs = run(tool.run({"queries": ["abc"]}, ToolContext("t", tmp_path)))
    assert obs.text.count("T abc") == 2 and "Link: https://d.org" in obs.text


@pytest.mark.live
@pytest.mark.skipif(os.environ.get("TRAJFORGE_LIVE") != "1", reason="needs TRAJFORGE_LIVE=1 and internet")
def test_live_ddgs(tmp_path):
    obs = run(
        TextSearchTool(DdgsText(), ToolCache(None)).run(
            {"queries": ["Eiffel Tower height"]}, ToolContext("t", tmp_path)
        )
    )
    assert obs.error is None and "1. " in obs.text


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("SERPER_API_KEY"), reason="needs SERPER_API_KEY and internet")
def test_live_serper(tmp_path):
    obs = run(
        TextSearchTool(SerperText(SerperClient("SERPER_API_KEY")), ToolCache(None)).run(
            {"queries": ["Eiffel Tower"]}, ToolContext("t", tmp_path)
        )
    )
    assert obs.error is None and "1. " in obs.text


class SlowText:
    """A text backend that takes a while and counts its calls (fails while `failing`)."""

    name = "slow"

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    async def search(self, query: str, k: int):
        from stages.tools.search.results import SearchHit

        self.calls += 1
        await asyncio.sleep(0.05)
        if self.failing:
            raise RuntimeError("backend down")
        return [SearchHit(title=f"About {query}", link=f"https://example.org/{self.calls}", snippet="")]


def test_concurrent_identical_searches_share_one_backend_call(tmp_path):
    """The K rollouts of a task ask for the same query at once: one API call serves them all."""
    backend = SlowText()
    tool = TextSearchTool(backend, ToolCache(tmp_path / "c.sqlite"), top_k=1)

    async def four(query: str):
        return await asyncio.gather(
            *(tool.run({"queries": [query]}, ToolContext(f"t{i}", tmp_path)) for i in range(4))
        )

    observations = run(four("velmora"))
    assert backend.calls == 1
    assert len({obs.text for obs in observations}) == 1 and "example.org/1" in observations[0].text
    assert tool.stats()["coalesced"] == 3 and tool.stats()["misses"] == 1
    run(four("velmora"))  # now from the cache
    assert backend.calls == 1 and tool.stats()["hits"] == 4

    backend.failing = True  # a failure reaches every joined caller and is not cached
    failed = run(four("quillon"))
    assert backend.calls == 2 and all("backend down" in (obs.error or "") for obs in failed)
    backend.failing = False
    assert not run(tool.run({"queries": ["quillon"]}, ToolContext("t", tmp_path))).error
    assert backend.calls == 3


def test_cancelled_caller_leaves_the_shared_fetch_to_the_others(tmp_path):
    cache = ToolCache(None)
    started = []

    async def fetch():
        started.append(1)
        await asyncio.sleep(0.05)
        return {"value": 1}

    async def scenario():
        first = asyncio.ensure_future(cache.get_or_fetch("ns", "k", fetch))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(cache.get_or_fetch("ns", "k", fetch))
        await asyncio.sleep(0.01)
        first.cancel()
        return await second

    assert run(scenario()) == {"value": 1} and len(started) == 1
