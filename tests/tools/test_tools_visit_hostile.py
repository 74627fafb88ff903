"""web_visit against hostile loopback pages (issue 26): compression bombs (stacked and single),
a server that drips one byte at a time, quadratic-regex bait, a redirect to a data: URL. Each is
bounded in memory and time and costs its own URL only."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trafilatura  # noqa: F401 - imported before memory is traced (its import costs MBs)

from pipeline.config import VisitToolConfig
from stages.tools.base import ToolContext
from stages.tools.cache import ToolCache
from stages.tools.visit.page_text import strip_blocks, title_of, visible_text
from stages.tools.visit.web_visit import WebVisitTool, extract

BOMB_BYTES = 200 * 1024 * 1024  # what each bomb inflates to
ARTICLE = (
    "<html><head><title>Harbour</title></head><body><p>The harbour light was built in 1871.</p></body></html>"
)


def _gzip_zeros(size: int) -> bytes:
    """gzip of `size` zero bytes, made in 1 MiB steps (the test never holds the inflated data)."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [squeeze.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + squeeze.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, body: bytes, ctype: str = "text/html", encoding: str | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        bombs = self.server.bombs
        if self.path == "/gzip-gzip":
            return self.send_body(bombs["gzip-gzip"], encoding="gzip, gzip")
        if self.path == "/deflate-deflate":
            return self.send_body(bombs["deflate-deflate"], encoding="deflate, deflate")
        if self.path == "/gzip":
            return self.send_body(bombs["gzip"], encoding="gzip")
        if self.path == "/gzip-article":
            return self.send_body(gzip.compress(ARTICLE.encode()), encoding="gzip")
        if self.path == "/deflate-article":
            return self.send_body(zlib.compress(ARTICLE.encode()), encoding="deflate")
        if self.path == "/article":
            return self.send_body(ARTICLE.encode())
        if self.path == "/unclosed-title":
            return self.send_body(("<html><head>" + "<title>x" * 250_000).encode())
        if self.path == "/unclosed-script":
            return self.send_body(("<html><body><p>Harbour text.</p>" + "<script>x" * 220_000).encode())
        if self.path == "/to-data":
            self.send_response(302)
            self.send_header("Location", "data:text/html,<h1>hi</h1>")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if self.path.startswith("/drip"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100):  # 20 s at most, far past the 2 s deadline
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return None
                time.sleep(0.2)
            return None
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients hang up on bombs and drips
        pass


@pytest.fixture(scope="module")
def server():
    inner = _gzip_zeros(BOMB_BYTES)
    raw = zlib.compressobj(9)
    deflated = b"".join(raw.compress(bytes(1 << 20)) for _ in range(BOMB_BYTES >> 20)) + raw.flush()
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.bombs = {
        "gzip": inner,
        "gzip-gzip": gzip.compress(inner, 9),
        "deflate-deflate": zlib.compress(deflated, 9),
    }
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def make_tool(tmp_path: Path, port: int, **overrides) -> WebVisitTool:
    cfg = VisitToolConfig(
        host_overrides={"world.trajforge.local": f"127.0.0.1:{port}"}, timeout_s=5, **overrides
    )
    return WebVisitTool(cfg, ToolCache(tmp_path / "visit.sqlite", enabled=False))


def visit(tool: WebVisitTool, urls: list[str]):
    async def go():
        try:
            return await tool.run({"urls": urls}, ToolContext("t", Path(".")))
        finally:
            await tool.client.aclose()

    return asyncio.run(go())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["/gzip-gzip", "/deflate-deflate", "/gzip"])
def test_compression_bombs_are_bounded_while_inflating(server, tmp_path, path):
    """Each bomb inflates to 200 MiB; at most max_bytes (1 MB) of it is ever held."""
    port = server.server_address[1]
    tracemalloc.start()
    try:
        started = time.perf_counter()
        alone = visit(make_tool(tmp_path, port, max_bytes=1_000_000), [f"http://world.trajforge.local{path}"])
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{path}: peak {peak / 1e6:.1f} MB of Python allocations, {elapsed:.2f} s")
    assert peak < 20_000_000, f"peak {peak / 1e6:.0f} MB of Python allocations"
    assert elapsed < 20
    if "-" in path:
        assert "stacked content encodings" in alone.text
    else:
        assert len(alone.text) < 10_000  # 1 MB of NULs, cut to max_chars
    obs = visit(
        make_tool(tmp_path, port, max_bytes=1_000_000),
        [f"http://world.trajforge.local{path}", "http://world.trajforge.local/article"],
    )
    assert "harbour light" in obs.text.split("\n\n")[-1]  # the bomb cost its own URL only
    assert obs.error is None


def test_single_gzip_and_deflate_pages_still_read(server, tmp_path):
    obs = visit(
        make_tool(tmp_path, server.server_address[1]),
        ["http://world.trajforge.local/gzip-article", "http://world.trajforge.local/deflate-article"],
    )
    assert obs.error is None and obs.text.count("harbour light") == 2, obs.text


@pytest.mark.timeout(30)
def test_a_dripping_page_stops_at_the_visit_deadline(server, tmp_path):
    """Two dripping pages and a good one in one call: the call ends within one 2 s deadline."""
    tool = make_tool(tmp_path, server.server_address[1], deadline_s=2.0)
    started = time.perf_counter()
    urls = [
        "http://world.trajforge.local/drip",
        "http://world.trajforge.local/drip?2",
        "http://world.trajforge.local/article",
    ]
    obs = visit(tool, urls)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.5, elapsed
    first, second, third = obs.text.split("\n\n")
    for block in (first, second):
        assert "longer than 2 s" in block and "deadline_s" in block
    assert "harbour light" in third


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["/unclosed-title", "/unclosed-script"])
def test_malformed_pages_extract_in_bounded_time(server, tmp_path, path):
    """2 MB of unclosed <title>/<script> tags: the old regexes were quadratic (minutes of CPU)."""
    tool = make_tool(tmp_path, server.server_address[1], deadline_s=10.0)
    started = time.perf_counter()
    obs = visit(tool, [f"http://world.trajforge.local{path}"])
    assert time.perf_counter() - started < 8.0
    assert "longer than" not in obs.text, obs.text[:300]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "html",
    [
        "<html><head>" + "<title>x" * 20_000,
        "<html><body>" + "<script>x" * 20_000,
        "<html><body>" + "<style>x" * 10_000 + "<script" * 10_000,
        "<html><body>" + "<a" * 80_000,
    ],
    ids=["title", "script", "style+script", "lt"],
)
def test_extraction_is_linear_on_malformed_html(html):
    """~160 KB each: milliseconds now; the old regexes took 5-20 s on each (holding the GIL)."""
    started = time.perf_counter()
    extract(html, "http://x/", "text/html")
    visible_text(html)
    assert time.perf_counter() - started < 1.5


def test_linear_scanners_keep_their_meaning():
    page = "<HTML><head><Title lang=en>  The\n Harbour </title><style>p{}</style></head><body><script>x()</script><p>Light &amp; <b>house</b></p></body>"
    assert title_of(page) == "The Harbour"
    assert "x()" not in strip_blocks(page) and "p{}" not in strip_blocks(page)
    assert visible_text(page) == "The Harbour Light &amp; house"
    assert title_of("<title>open and never closed") == "open and never closed"
    assert strip_blocks("a<script>b") == "a"


def test_a_redirect_to_a_data_url_costs_that_url_only(server, tmp_path):
    obs = visit(
        make_tool(tmp_path, server.server_address[1]),
        ["http://world.trajforge.local/to-data", "http://world.trajforge.local/article"],
    )
    first, second = obs.text.split("\n\n")
    assert "Not visited" in first and "cannot be visited" in first
    assert "harbour light" in second and obs.error is None
