"""web_visit: fetch pages safely, extract the main text, optionally summarise toward the goal.

Each hop (the URL and every redirect) goes through the SSRF guard, and the connection is pinned
to the address the guard checked (the Host header and TLS SNI keep the real name), so DNS
cannot be rebound between check and connect. Bodies are streamed and inflated up to `max_bytes`
(`page_body`: one gzip/deflate layer, bounded while it inflates); only HTML, XHTML and plain
text are read. One page's whole visit (connect, redirects, body, extraction) runs under
`deadline_s`. Extraction is linear in the page: scripts and styles are cut by a forward-only
scan (`page_text`), at most `max_extract_chars` go to trafilatura. Pages longer than
`max_chars` are summarised by an OpenAI-compatible model when one is configured (R1V4 used a
32B model for this), otherwise truncated with a note.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from pipeline.config import ToolsConfig, VisitToolConfig, secret
from pipeline.schema import Observation
from pipeline.tool_spec import ToolSpec
from stages.tools.args import ArgumentError, string_list
from stages.tools.base import Tool, ToolContext, ToolEnv, batch_observation
from stages.tools.cache import ToolCache
from stages.tools.visit.page_body import ACCEPT_ENCODING, read_body
from stages.tools.visit.page_text import strip_blocks, title_of, visible_text
from stages.tools.visit.ssrf import BlockedURL, Resolver, Target, check_url, system_resolver

if TYPE_CHECKING:
    from stages.tools.search.corpus_web import CorpusWeb

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
USER_AGENT = "trajforge-web-visit/0.1 (+research data generation)"


def pinned_request(target: Target) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL dialling the checked address, plus the Host header and SNI that keep the real name."""
    parts = urlsplit(target.url)
    host = target.connect_host
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            host = f"[{host}]"
    except ValueError:
        pass
    url = urlunsplit((parts.scheme, f"{host}:{target.connect_port}", parts.path or "/", parts.query, ""))
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return url, {"Host": host_header}, extensions


def extract(html: str, url: str, content_type: str, *, max_chars: int = 1_000_000) -> tuple[str, str]:
    """(title, main text) of a page, in time linear in its length (see `page_text`)."""
    if "html" not in content_type:
        return "", html.strip()
    import trafilatura

    lower = html.lower()
    title = title_of(html, lower)
    html = strip_blocks(html, lower)[:max_chars]  # trafilatura costs ~3 us a character
    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True, favor_recall=True)
    if not text:  # tiny or unusual pages: fall back to the visible text
        text = visible_text(html)
    return title, text


def _readable_type(url: str, header: str) -> str:
    """The page's MIME type from its Content-Type; an error for anything but a readable page."""
    content_type = header.split(";")[0].strip().lower()
    if content_type and content_type not in TEXT_TYPES:
        raise RuntimeError(f"{url} is {content_type}, not a readable page")
    return content_type


async def _page(url: str, content_type: str, body: bytes, encoding: str, max_chars: int) -> dict[str, str]:
    """Title, text and URL of a fetched body (the one reading of every page, local or remote).
    In a thread the visit's deadline stops the waiting, not the work: `max_chars` bounds that."""
    html = body.decode(encoding, errors="replace")
    title, text = await asyncio.to_thread(
        extract, html, url, content_type or "text/html", max_chars=max_chars
    )
    return {"url": url, "title": title, "text": text}


def _unbind(response: httpx.Response) -> None:
    """Cut a closed streamed response from its stream. httpx binds the two to each other (the
    stream holds the response to stamp its elapsed time), a reference cycle that keeps the
    request, headers and connection-pool records (~24 objects a fetch) until a full garbage
    collection: the only cyclic garbage a synth worker made per visit, and what made freezing
    a worker's survivors leak. Once cut, reference counting frees the whole fetch."""
    response.stream = httpx.ByteStream(b"")


class WebVisitTool(Tool):
    spec = ToolSpec(
        name="web_visit",
        modes=("deepresearch",),
        description=(
            "Visit web pages and read their main text (long pages are summarised toward your goal). "
            "Give one or more URLs, usually links from search results."
        ),
        parameters={
            "type": "object",
            "properties": {
                "urls": {"type": "array", "items": {"type": "string"}, "description": "Page URLs."}
            },
            "required": ["urls"],
        },
        prompt="Fetches web pages and returns their main text.",
        text_usage='{"urls": ["..."]}',
        native_usage="(urls)",
        plan_parameter="url",
        plan_step="Visit {value} and read the relevant details",
        plan_prompt="read a web page",
    )

    @classmethod
    def create(cls, cfg: ToolsConfig, env: ToolEnv) -> WebVisitTool:
        local = None
        if cfg.search.corpus:  # the encyclopedia's own origin is answered from the corpus itself
            from stages.tools.search.corpus_web import CorpusWeb

            cache = Path(cfg.search.corpus_cache) if cfg.search.corpus_cache else None
            local = CorpusWeb(Path(cfg.search.corpus), cfg.search.corpus_kind, cache)
        return cls(cfg.visit, env.cache(cfg.visit.cache), local=local)

    def __init__(
        self,
        cfg: VisitToolConfig,
        cache: ToolCache,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = system_resolver,
        local: CorpusWeb | None = None,
    ) -> None:
        self.cfg = cfg
        self.local = local
        self.cache = cache
        self.resolver = resolver
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=cfg.timeout_s,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
        )
        self.fetches = 0

    async def fetch(self, url: str) -> dict[str, str]:
        """Title, text and final URL of a page within `deadline_s`; BlockedURL or RuntimeError."""
        try:
            return await asyncio.wait_for(self._fetch(url), self.cfg.deadline_s)
        except asyncio.TimeoutError:
            raise RuntimeError(
                f"the visit took longer than {self.cfg.deadline_s:g} s (tools.visit.deadline_s) and was stopped"
            ) from None

    async def _fetch(self, url: str) -> dict[str, str]:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            if self.local is not None and self.local.handles(current):
                return await self._fetch_local(current)
            target = await check_url(
                current,
                allow_hosts=self.cfg.allow_hosts,
                host_overrides=self.cfg.host_overrides,
                resolver=self.resolver,
            )
            request_url, headers, extensions = pinned_request(target)
            request = self.client.build_request("GET", request_url, headers=headers, extensions=extensions)
            try:
                response = await self.client.send(request, stream=True)
            except httpx.InvalidURL as exc:  # httpx parses a redirect's Location as it arrives
                raise BlockedURL(f"{current} redirects to a URL that cannot be visited ({exc})") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    if not location:
                        raise RuntimeError(f"HTTP {response.status_code} redirect without a Location")
                    current = urljoin(current, location)
                    continue
                if response.status_code >= 400:
                    raise RuntimeError(f"HTTP {response.status_code} from {current}")
                content_type = _readable_type(current, response.headers.get("content-type", ""))
                body = await read_body(
                    response.aiter_raw(), response.headers.get("content-encoding", ""), self.cfg.max_bytes
                )
            finally:
                await response.aclose()
                _unbind(response)
            return await _page(
                current, content_type, body, response.encoding or "utf-8", self.cfg.max_extract_chars
            )
        raise RuntimeError(f"more than {MAX_REDIRECTS} redirects starting at {url}")

    async def _fetch_local(self, url: str) -> dict[str, str]:
        """A page of the served corpus: the bytes its HTTP server would send, read the same way."""
        assert self.local is not None
        found = await asyncio.to_thread(self.local.fetch, url)
        if found is None:
            raise RuntimeError(f"HTTP 404 from {url}")
        final, mime, body = found
        content_type = _readable_type(final, mime)
        return await _page(
            final, content_type, body[: self.cfg.max_bytes], "utf-8", self.cfg.max_extract_chars
        )

    async def summarise(self, page: dict[str, str], goal: str) -> str:
        text = page["text"]
        if len(text) <= self.cfg.max_chars:
            return text
        if self.cfg.summarizer_base_url and self.cfg.summarizer_model:
            key = f"{self.cfg.summarizer_model}:{goal}:{page['url']}"
            return await self.cache.get_or_fetch(
                "visit-summary", key, lambda: self._summarise_remote(page, goal)
            )
        return (
            text[: self.cfg.max_chars]
            + f"\n[... truncated: {len(text) - self.cfg.max_chars} more characters]"
        )

    async def _summarise_remote(self, page: dict[str, str], goal: str) -> str:
        """The configured summariser model's digest of the page for this goal."""
        from openai import AsyncOpenAI

        api_key = secret(self.cfg.summarizer_key_env, purpose="the page summariser") or "none"
        prompt = (
            f"Goal: {goal or 'answer the question'}\n\nExtract from the page below everything relevant to the goal "
            "(facts, names, dates, numbers), then summarise the rest briefly.\n\n"
            f"Page: {page['title']} ({page['url']})\n\n{page['text'][:60_000]}"
        )
        async with AsyncOpenAI(base_url=self.cfg.summarizer_base_url, api_key=api_key, timeout=120) as client:
            reply = await client.chat.completions.create(
                model=self.cfg.summarizer_model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=1024,
            )
        return (reply.choices[0].message.content or "").strip()

    async def _fetch_counted(self, url: str) -> dict[str, str]:
        self.fetches += 1
        return await self.fetch(url)

    async def _run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        try:
            urls = string_list(arguments, "urls", self.name, limit=5)
        except ArgumentError as exc:
            return Observation(error=str(exc))
        # the pages are visited side by side, each under `deadline_s`: the call's fetching ends
        # within one deadline however many URLs it names
        results = await asyncio.gather(*(self._visit_one(n, url, ctx) for n, url in enumerate(urls, 1)))
        blocks = [block for block, _ in results]
        errors = [error for _, error in results if error]
        return batch_observation(blocks, errors, len(urls))

    async def _visit_one(self, number: int, url: str, ctx: ToolContext) -> tuple[str, str | None]:
        """(block, error or None) for one URL: a bad page or redirect costs this URL only."""
        try:
            page = await self.cache.get_or_fetch("visit", url, lambda: self._fetch_counted(url))
            body = await self.summarise(page, ctx.goal or ctx.question)
            return f"{number}. {page['title'] or '(untitled)'}\n   Link: {page['url']}\n{body}", None
        except BlockedURL as exc:
            return f"{number}. {url}\n   Not visited: {exc}", f"{url}: blocked: {exc}"
        except Exception as exc:
            return f"{number}. {url}\n   Failed: {exc}", f"{url}: {type(exc).__name__}: {exc}"

    def stats(self) -> dict[str, float]:
        return {**self.cache.stats(), "fetches": self.fetches}

    async def aclose(self) -> None:
        await self.client.aclose()
        self.cache.close()
        if self.local is not None:
            self.local.close()
