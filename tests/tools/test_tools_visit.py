"""web_visit and the SSRF guard against real loopback servers: direct, redirected and encoded
private addresses are refused; the configured world host (override / allow-list) works."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.config import VisitToolConfig
from stages.tools.base import ToolContext
from stages.tools.cache import ToolCache
from stages.tools.visit.ssrf import BlockedURL, address_problem, check_url
from stages.tools.visit.web_visit import WebVisitTool

ARTICLE = (
    "<html><head><title>Velmora Lighthouse</title></head><body><nav>menu</nav><article><h1>Velmora Lighthouse</h1>"
    + "".join(
        f"<p>Paragraph {i}: the lighthouse on basalt cliffs was lit in 1871 by engineer Oskar Brandt.</p>"
        for i in range(8)
    )
    + "</article></body></html>"
)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append((self.path, self.headers.get("Host")))
        port = self.server.server_address[1]
        routes = {
            "/wiki/velmora": (200, "text/html; charset=utf-8", ARTICLE),
            "/secret": (200, "text/plain", "TOP SECRET internal data"),
            "/big": (200, "text/plain", "x" * 50_000),
            "/image": (200, "image/png", "\x89PNG"),
        }
        if self.path == "/to-loopback":
            return self.redirect(f"http://localhost:{port}/secret")
        if self.path == "/to-decimal":
            return self.redirect(f"http://2130706433:{port}/secret")
        if self.path == "/to-private":
            return self.redirect("http://10.11.12.13/secret")
        if self.path == "/to-article":
            return self.redirect("/wiki/velmora")
        status, ctype, body = routes.get(self.path, (404, "text/plain", "nope"))
        data = body.encode("latin-1")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def make_tool(tmp_path, port, **overrides) -> WebVisitTool:
    cfg = VisitToolConfig(
        host_overrides={"world.trajforge.local": f"127.0.0.1:{port}"}, timeout_s=5, **overrides
    )
    return WebVisitTool(cfg, ToolCache(tmp_path / "visit.sqlite"))


def visit(tool, urls):
    async def go():
        try:
            return await tool.run({"urls": urls}, ToolContext("t", Path(".")))
        finally:
            await tool.client.aclose()

    return asyncio.run(go())


def test_world_host_override_is_fetched_and_extracted(server, tmp_path):
    port = server.server_address[1]
    obs = visit(make_tool(tmp_path, port), ["http://world.trajforge.local/wiki/velmora"])
    assert obs.error is None, obs.text
    lines = obs.text.splitlines()
    assert lines[0] == "1. Velmora Lighthouse"
    assert lines[1] == "   Link: http://world.trajforge.local/wiki/velmora"
    assert "Oskar Brandt" in obs.text and "menu" not in obs.text
    assert server.hits[-1] == ("/wiki/velmora", "world.trajforge.local")  # Host header keeps the name


def test_relative_redirect_within_world_works(server, tmp_path):
    obs = visit(make_tool(tmp_path, server.server_address[1]), ["http://world.trajforge.local/to-article"])
    assert obs.error is None and "Oskar Brandt" in obs.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://[::1]:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://2130706433:{port}/secret",
        "http://0x7f000001:{port}/secret",
        "http://0177.0.0.1:{port}/secret",
        "http://0x7f.1:{port}/secret",
        "http://127.1:{port}/secret",
        "http://10.0.0.1/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0:{port}/secret",
        "file:///etc/passwd",
        "http://user:pw@example.org/",
    ],
)
def test_direct_and_encoded_private_addresses_are_refused(server, tmp_path, url):
    before = len(server.hits)
    obs = visit(make_tool(tmp_path, server.server_address[1]), [url.format(port=server.server_address[1])])
    assert obs.error and "blocked" in obs.error
    assert "TOP SECRET" not in obs.text
    assert len(server.hits) == before  # nothing reached the server


@pytest.mark.parametrize("path", ["/to-loopback", "/to-decimal", "/to-private"])
def test_redirects_to_private_addresses_are_refused(server, tmp_path, path):
    obs = visit(make_tool(tmp_path, server.server_address[1]), [f"http://world.trajforge.local{path}"])
    assert obs.error and "blocked" in obs.error
    assert "TOP SECRET" not in obs.text
    assert all(hit[0] != "/secret" for hit in server.hits)


def test_hostname_resolving_to_private_address_is_refused():
    async def evil_resolver(host, port):
        return ["93.184.216.34", "10.0.0.7"]  # one public, one private: refused

    with pytest.raises(BlockedURL, match=r"10\.0\.0\.7"):
        asyncio.run(check_url("https://evil.example/", resolver=evil_resolver))

    async def public_resolver(host, port):
        return ["93.184.216.34"]

    target = asyncio.run(check_url("https://fine.example:8443/x", resolver=public_resolver))
    assert (target.connect_host, target.connect_port, target.host) == ("93.184.216.34", 8443, "fine.example")


def test_allow_list_admits_loopback_host(server, tmp_path):
    port = server.server_address[1]
    tool = make_tool(tmp_path, port, allow_hosts=["127.0.0.1"])
    obs = visit(tool, [f"http://127.0.0.1:{port}/wiki/velmora"])
    assert obs.error is None and "Oskar Brandt" in obs.text


def test_address_classification():
    assert address_problem("8.8.8.8") is None
    for address in ("100.64.0.1", "192.168.1.1", "::1", "2002:7f00:1::1", "fc00::1", "255.255.255.255"):
        assert address_problem(address), address


def test_content_type_size_limit_and_cache(server, tmp_path):
    port = server.server_address[1]
    tool = make_tool(tmp_path, port, max_bytes=10_000, max_chars=3000)
    obs = visit(tool, ["http://world.trajforge.local/image", "http://world.trajforge.local/big"])
    first, second = obs.text.split("\n\n")
    assert "image/png" in first and "not a readable page" in first
    assert "truncated" in second and len(second) < 3300
    assert obs.error is None and len(obs.meta["partial_errors"]) == 1
    hits = len(server.hits)
    again = make_tool(tmp_path, port, max_bytes=10_000, max_chars=3000)
    visit(again, ["http://world.trajforge.local/big"])
    assert len(server.hits) == hits and again.stats()["hits"] == 1


def test_bad_arguments(tmp_path):
    obs = visit(make_tool(tmp_path, 1), [])
    assert obs.error and "urls" in obs.error


def test_a_fetch_leaves_no_reference_cycles_of_its_own(server, tmp_path):
    """httpx binds a streamed response and its stream to each other; left bound, every visit
    left its request, headers and pool records for a full garbage collection to find (and a
    synth worker that freezes its survivors would have kept them for good)."""
    import gc

    tool = make_tool(tmp_path, server.server_address[1])
    urls = ["http://world.trajforge.local/wiki/velmora", "http://world.trajforge.local/to-article"]

    async def go():
        try:
            await tool.fetch(urls[0])  # first use: imports and pools are made once
            gc.collect()
            gc.garbage.clear()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                pages = [await tool.fetch(url) for url in urls * 3]
                gc.collect()
                return pages, [type(o).__module__ for o in gc.garbage]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
        finally:
            await tool.aclose()

    pages, cyclic = asyncio.run(go())
    assert all("Oskar Brandt" in page["text"] for page in pages)
    # (the test server closes each connection: asyncio's closed transports are the stdlib's own)
    assert not [m for m in cyclic if m.split(".")[0] in ("httpx", "httpcore", "stages")]


def test_a_long_page_is_summarised_once_per_goal_by_the_configured_model(server, tmp_path):
    from tests.fake_openai import FakeTeacher

    teacher = FakeTeacher(lambda body: f"digest of {len(body['messages'][0]['content'])} characters")
    try:
        port = server.server_address[1]
        tool = make_tool(
            tmp_path, port, max_chars=3000, summarizer_base_url=teacher.base_url, summarizer_model="small"
        )
        urls = ["http://world.trajforge.local/big", "http://world.trajforge.local/big"]
        obs = visit(tool, urls)  # side by side: the second joins the first's fetch and summary
        again = visit(
            make_tool(
                tmp_path, port, max_chars=3000, summarizer_base_url=teacher.base_url, summarizer_model="small"
            ),
            urls[:1],
        )  # another run: from the file
    finally:
        teacher.close()
    assert obs.error is None and obs.text.count("digest of ") == 2 and "digest of " in again.text
    assert (
        "x" * 100 in teacher.requests[0]["messages"][0]["content"] and teacher.requests[0]["model"] == "small"
    )
    assert len(teacher.requests) == 1
