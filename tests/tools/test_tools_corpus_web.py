"""An encyclopedia served as a local web (`trajforge corpus index`, `tools.search.corpus`): a
folder of HTML the test writes, and the real Ray Charles ZIM (skipped without ../shared).
text_search, image_search and web_visit answer from the corpus under its local origin; the
in-process route gives what an HTTP fetch of the same bytes gives, and nothing else bypasses
the SSRF guard."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import VisitToolConfig
from stages.tools.base import ToolContext
from stages.tools.cache import ToolCache
from stages.tools.search.corpus_web import ORIGIN_HOST, CorpusWeb, index_corpus, origin_for
from stages.tools.visit.web_visit import WebVisitTool
from tests.reference import reference

PAGES = {
    "velmora": ("Velmora Lighthouse", "The Velmora lighthouse on basalt cliffs was lit in 1871 by engineer "
                '<a href="oskar_brandt.html">Oskar Brandt</a>. <img src="img/velmora.png">'),
    "oskar_brandt": ("Oskar Brandt", "Oskar Brandt was a harbour engineer who designed three lighthouses."),
    "quay": ("Stonebridge Quay", "Stonebridge Quay is a fishing quay with twelve moorings and a fish market."),
}  # fmt: skip


def _picture(seed: int, size: int = 160) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize(
        (size, size), Image.NEAREST
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "harbour_wiki"
    (root / "img").mkdir(parents=True)
    for stem, (title, body) in PAGES.items():
        html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p></body></html>"
        (root / f"{stem}.html").write_text(html, encoding="utf-8")
    _picture(1).save(root / "img" / "velmora.png")
    return root


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _tool_json(output: str) -> dict:
    return json.loads(output[output.index("{") : output.rindex("}") + 1])


def _sets(source: Path, tmp_path: Path) -> list[str]:
    return ["--set", f"tools.search.corpus={source}", "--set", f"tools.search.corpus_cache={tmp_path / 'cache'}",
            "--set", f"run.root={tmp_path / 'runs'}"]  # fmt: skip


def test_a_folder_of_html_answers_search_image_search_and_visit(folder: Path, tmp_path: Path) -> None:
    origin = origin_for(folder)
    out = _cli("corpus", "index", "--corpus", str(folder), *_sets(folder, tmp_path)[2:4])
    assert "3 pages" in out and "1 page images" in out and origin in out
    found = _tool_json(_cli("tools", "search", "text", "basalt cliffs lighthouse", *_sets(folder, tmp_path)))
    assert found["error"] is None
    assert found["text"].splitlines()[2] == f"   Link: {origin}velmora.html", found["text"]
    query = tmp_path / "crop.png"
    _picture(1).crop((8, 8, 152, 152)).resize((300, 300)).save(query)
    images = _tool_json(_cli("tools", "search", "image", str(query), *_sets(folder, tmp_path)))
    assert f"Link: {origin}velmora.html" in images["text"] and f"{origin}img/velmora.png" in images["text"]
    page = _tool_json(_cli("tools", "visit", f"{origin}oskar_brandt.html", *_sets(folder, tmp_path)))
    assert page["error"] is None and "designed three lighthouses" in page["text"]


def test_the_index_is_built_once_and_rebuilt_when_the_source_changes(folder: Path, tmp_path: Path) -> None:
    first = index_corpus(folder, cache=tmp_path / "cache")
    stamp = (first / "DONE").stat().st_mtime_ns
    assert json.loads((first / "inlinks.json").read_text()) == {
        "Oskar Brandt": 1
    }  # counted once, for the walk
    assert index_corpus(folder, cache=tmp_path / "cache") == first
    assert (first / "DONE").stat().st_mtime_ns == stamp  # reused, not rebuilt
    (folder / "quay.html").write_text("<html><h1>Stonebridge Quay</h1><p>Now a marina.</p></html>")
    second = index_corpus(folder, cache=tmp_path / "cache")
    assert second != first and "marina" in (second / "pages.jsonl").read_text()


def test_a_corpus_without_pages_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.html").write_text("<html><h1>A</h1></html>")
    result = CliRunner().invoke(app, ["corpus", "index", "--corpus", str(empty), "--set",
                                      f"tools.search.corpus_cache={tmp_path / 'c'}"])  # fmt: skip
    assert result.exit_code == 2 and "no readable pages" in result.output
    assert not any((tmp_path / "c").glob(".web-*.tmp*")), "a failed build leaves nothing behind"


class _Mirror(BaseHTTPRequestHandler):
    """Serves a corpus's bytes over HTTP, as a static server of the corpus would."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        found = self.server.web.fetch(f"http://{ORIGIN_HOST}{self.path}")
        if found is None:
            self.send_response(404)
            self.end_headers()
            return
        _, mime, body = found
        self.send_response(200)
        self.send_header("Content-Type", f"{mime}; charset=utf-8" if mime.startswith("text/") else mime)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _visit(tool: WebVisitTool, url: str):
    async def go():
        try:
            return await tool.run({"urls": [url]}, ToolContext("t", Path(".")))
        finally:
            await tool.aclose()

    return asyncio.run(go())


def _same_page_both_ways(source: Path, path: str, tmp_path: Path) -> str:
    """The in-process route's observation equals an HTTP fetch of the same bytes; returns it."""
    web = CorpusWeb(source)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    server.web, server.hits = web, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        over_http = WebVisitTool(
            VisitToolConfig(
                host_overrides={ORIGIN_HOST: f"127.0.0.1:{server.server_address[1]}"}, timeout_s=5
            ),
            ToolCache(tmp_path / "a.sqlite"),
        )
        remote = _visit(over_http, web.origin + path)
        local = _visit(WebVisitTool(VisitToolConfig(), ToolCache(tmp_path / "b.sqlite"), local=CorpusWeb(source)),
                       web.origin + path)  # fmt: skip
        assert server.hits, "the HTTP fetch did not reach the mirror"
    finally:
        server.shutdown()
        web.close()
    assert remote.error is None and local.error is None, (remote.error, local.error)
    assert local.text == remote.text
    return local.text


def test_the_local_route_reads_a_page_as_an_http_fetch_would(folder: Path, tmp_path: Path) -> None:
    text = _same_page_both_ways(folder, "velmora.html", tmp_path)
    assert "Oskar Brandt" in text


def test_only_the_corpus_origin_bypasses_the_ssrf_guard(folder: Path, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    server.web, server.hits = CorpusWeb(folder), []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for url in (f"http://127.0.0.1:{server.server_address[1]}/harbour-wiki/velmora.html",
                    f"http://{ORIGIN_HOST}/another-corpus/velmora.html",
                    f"https://{ORIGIN_HOST}/harbour-wiki/velmora.html"):  # fmt: skip
            tool = WebVisitTool(
                VisitToolConfig(timeout_s=3), ToolCache(tmp_path / "c.sqlite"), local=CorpusWeb(folder)
            )
            obs = _visit(tool, url)
            assert obs.error is not None and "Oskar" not in obs.text, url
        assert server.hits == []  # the loopback server was never reached
    finally:
        server.shutdown()
    missing = _visit(WebVisitTool(VisitToolConfig(), ToolCache(tmp_path / "d.sqlite"), local=CorpusWeb(folder)),
                     origin_for(folder) + "nowhere.html")  # fmt: skip
    assert "HTTP 404" in (missing.error or "")


def test_a_mediawiki_dump_is_searched_and_visited_from_its_index(tmp_path: Path) -> None:
    """A dump has no random access: its pages are served from the index, never re-read."""
    from tests.walk.test_walk_corpus import _PAGE, DUMP

    wikitext = {
        "Alpha": "'''Alpha''' is a harbour town with a basalt lighthouse, twinned with [[Beta]].",
        "Beta": "'''Beta''' is a river town known for its salt market.",
    }
    pages = [
        _PAGE.format(title=t, ns=0, id=i + 1, redirect="", text=x)
        for i, (t, x) in enumerate(wikitext.items())
    ]
    dump = tmp_path / "tinywiki-pages-articles.xml"
    dump.write_text(DUMP.replace("{pages}", "\n".join(pages)), encoding="utf-8")
    origin = origin_for(dump)
    out = _cli("corpus", "index", "--corpus", str(dump), *_sets(dump, tmp_path)[2:4])
    assert "2 pages" in out
    found = _tool_json(_cli("tools", "search", "text", "salt market river", *_sets(dump, tmp_path)))
    assert found["text"].splitlines()[2] == f"   Link: {origin}Beta", found["text"]
    page = _tool_json(_cli("tools", "visit", f"{origin}Alpha", *_sets(dump, tmp_path)))
    assert page["error"] is None and "basalt lighthouse" in page["text"], page
    missing = CliRunner().invoke(app, ["tools", "visit", f"{origin}Gamma", *_sets(dump, tmp_path)])
    assert missing.exit_code == 1 and "HTTP 404" in _tool_json(missing.output)["error"]


# ---------------------------------------------------------------------------- the real ZIM


@pytest.fixture(scope="module")
def ray_charles() -> Path:
    return reference("ray_charles.zim")


def test_ray_charles_zim_is_indexed_and_served(ray_charles: Path, tmp_path: Path) -> None:
    origin = origin_for(ray_charles)
    out = _cli("corpus", "index", "--corpus", str(ray_charles), *_sets(ray_charles, tmp_path)[2:4])
    assert "85 pages" in out, out
    found = _tool_json(_cli("tools", "search", "text", "Percy Mayfield song Billboard Hot 100 1961",
                            *_sets(ray_charles, tmp_path)))  # fmt: skip
    assert found["text"].splitlines()[2] == f"   Link: {origin}A/Hit_the_Road_Jack.html", found["text"]
    from libzim.reader import Archive

    portrait = bytes(
        Archive(str(ray_charles)).get_entry_by_path("I/m/Ray_Charles_(cropped).jpg").get_item().content
    )
    query = tmp_path / "portrait.png"
    image = Image.open(io.BytesIO(portrait)).convert("RGB")
    w, h = image.size
    image.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((400, 400)).save(query)
    hits = _tool_json(_cli("tools", "search", "image", str(query), *_sets(ray_charles, tmp_path)))["text"]
    assert f"Link: {origin}A/Ray_Charles.html" in hits, hits
    assert f"{origin}I/m/Ray_Charles_%28cropped%29.jpg" in hits
    # a redirect entry of the archive ends at its target's own URL, as an HTTP redirect would
    page = _tool_json(
        _cli("tools", "visit", f"{origin}A/Hit_the_Road,_Jack.html", *_sets(ray_charles, tmp_path))
    )
    assert page["error"] is None
    assert f"Link: {origin}A/Hit_the_Road_Jack.html" in page["text"] and "Percy Mayfield" in page["text"]


def test_ray_charles_page_reads_the_same_in_process_and_over_http(ray_charles: Path, tmp_path: Path) -> None:
    text = _same_page_both_ways(ray_charles, "A/Ray_Charles.html", tmp_path)
    assert "Albany, Georgia" in text
