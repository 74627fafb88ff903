"""text_search and image_search: R1V4's search tools over live (ddgs, Serper) or local backends.

Every backend returns `SearchHit`s; the tools format them as numbered lists and cache them
(text by backend + normalised query, images by backend + perceptual hash), so a rerun costs no
API call. Live backends take an injectable HTTP transport so tests fake the network boundary.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any, Protocol

import httpx

from pipeline.config import ToolsConfig, secret
from pipeline.schema import Observation
from pipeline.tool_spec import ToolSpec
from stages.tools.args import ArgumentError, string_list
from stages.tools.base import Tool, ToolContext, ToolEnv, batch_observation, public_error
from stages.tools.cache import ToolCache, normalise_query
from stages.tools.search.results import SearchHit, format_hits

log = logging.getLogger(__name__)

SERPER_URL = "https://google.serper.dev"


class TextBackend(Protocol):
    name: str

    async def search(self, query: str, k: int) -> list[SearchHit]: ...


class ImageBackend(Protocol):
    name: str

    async def search(self, path: Path, k: int) -> list[SearchHit]: ...


# ------------------------------------------------------------------------------ text backends


class LocalText:
    name = "local"

    def __init__(self, corpus_dir: Path, index_dir: Path | None) -> None:
        from stages.tools.search.text_index import LocalTextIndex

        self.index = LocalTextIndex(corpus_dir, index_dir)

    async def search(self, query: str, k: int) -> list[SearchHit]:
        return await asyncio.to_thread(self.index.search, query, k)


class DdgsText:
    """DuckDuckGo and friends through `ddgs` (no key). `client_factory` is the test seam."""

    name = "ddgs"

    def __init__(self, client_factory: Any = None, timeout_s: float = 10.0) -> None:
        self.client_factory = client_factory
        self.timeout_s = timeout_s

    def _search(self, query: str, k: int) -> list[SearchHit]:
        if self.client_factory is None:
            from ddgs import DDGS

            client = DDGS(timeout=int(self.timeout_s))
        else:
            client = self.client_factory()
        rows = client.text(query, max_results=k) or []
        return [
            SearchHit(title=r.get("title", ""), link=r.get("href", ""), snippet=r.get("body", ""))
            for r in rows[:k]
        ]

    async def search(self, query: str, k: int) -> list[SearchHit]:
        return await asyncio.to_thread(self._search, query, k)


class SerperClient:
    """Serper.dev (Google web search and Google Lens); the key is read from the environment per call."""

    def __init__(
        self, key_env: str, transport: httpx.AsyncBaseTransport | None = None, timeout_s: float = 20.0
    ):
        self.key_env = key_env
        self.client = httpx.AsyncClient(base_url=SERPER_URL, transport=transport, timeout=timeout_s)

    async def post(self, endpoint: str, payload: dict) -> dict:
        key = secret(self.key_env, purpose="the Serper search backend")
        response = await self.client.post(endpoint, json=payload, headers={"X-API-KEY": key or ""})
        if response.status_code in (401, 403):
            raise RuntimeError(
                f"Serper rejected the API key in ${self.key_env} (HTTP {response.status_code})"
            )
        response.raise_for_status()
        return response.json()

    async def aclose(self) -> None:
        await self.client.aclose()


class SerperText:
    name = "serper"

    def __init__(self, client: SerperClient) -> None:
        self.client = client

    async def search(self, query: str, k: int) -> list[SearchHit]:
        data = await self.client.post("/search", {"q": query, "num": k})
        return [
            SearchHit(title=r.get("title", ""), link=r.get("link", ""), snippet=r.get("snippet", ""))
            for r in data.get("organic", [])[:k]
        ]


# ------------------------------------------------------------------------------ image backends


class LocalImages:
    """Reverse image search over the local corpus; hits carry the images' web addresses, and
    `locate` turns such an address back into the corpus file when the agent searches a result."""

    name = "local"
    cache_name = "local-url"  # cached hits of the old name held corpus file paths, not URLs

    def __init__(self, corpus_dir: Path, index_dir: Path | None) -> None:
        from stages.tools.search.image_index import LocalImageIndex

        self.index = LocalImageIndex(corpus_dir, index_dir)

    async def search(self, path: Path, k: int) -> list[SearchHit]:
        return await asyncio.to_thread(self.index.search, path, k)

    def locate(self, url: str) -> Path | None:
        return self.index.locate(url)


class SerperLens:
    """Google Lens through Serper. Lens fetches the image by URL, so a local image (a crop made
    in the sandbox) must be published first: it is copied, named by its sha256, into
    `publish_dir`, which the user serves at `public_image_base_url` (a bucket synced from that
    folder, or any static server reachable from the internet). Without that URL the call fails
    with an error that says so."""

    name = "serper"

    def __init__(self, client: SerperClient, public_base_url: str | None, publish_dir: Path) -> None:
        self.client = client
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.publish_dir = publish_dir

    def publish(self, path: Path) -> str:
        if not self.public_base_url:
            raise RuntimeError(
                "Google Lens needs a public URL for local images; set tools.search.public_image_base_url to a "
                f"web address that serves the folder {self.publish_dir} (or use image_backend: local)"
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.publish_dir.mkdir(parents=True, exist_ok=True)
        target = self.publish_dir / f"{digest}{path.suffix or '.png'}"
        if not target.exists():
            shutil.copyfile(path, target)
        return f"{self.public_base_url}/{target.name}"

    async def search(self, path: Path, k: int) -> list[SearchHit]:
        data = await self.client.post("/lens", {"url": self.publish(path)})
        rows = data.get("organic") or data.get("visual_matches") or []
        return [
            SearchHit(
                title=r.get("title", ""),
                link=r.get("link", ""),
                image=r.get("imageUrl") or r.get("thumbnailUrl", ""),
                snippet=r.get("source", ""),
            )
            for r in rows[:k]
        ]


# ------------------------------------------------------------------------------ backends by config


def _corpus(cfg: ToolsConfig, corpus_dir: Path | None) -> Path:
    if cfg.search.corpus:  # an encyclopedia served locally: its indexed export (built once)
        from stages.tools.search.corpus_web import index_corpus

        cache = Path(cfg.search.corpus_cache) if cfg.search.corpus_cache else None
        return index_corpus(Path(cfg.search.corpus), cfg.search.corpus_kind, cache)
    chosen = Path(cfg.search.corpus_dir) if cfg.search.corpus_dir else corpus_dir
    if chosen is None:
        raise ValueError("local search needs a corpus: set tools.search.corpus_dir or build the world")
    return chosen


def text_backend(cfg: ToolsConfig, corpus_dir: Path | None) -> TextBackend:
    """The configured web search: ddgs, Serper, or BM25 over a local corpus."""
    backend = cfg.search.text_backend
    if backend == "ddgs":
        return DdgsText()
    if backend == "serper":
        return SerperText(SerperClient(cfg.search.serper_key_env))
    return LocalText(_corpus(cfg, corpus_dir), _index_dir(cfg))


def image_backend(cfg: ToolsConfig, corpus_dir: Path | None, cache_dir: Path) -> ImageBackend:
    """The configured reverse image search: Serper's Google Lens, or pHash over a local corpus."""
    if cfg.search.image_backend == "serper":
        client = SerperClient(cfg.search.serper_key_env)
        return SerperLens(client, cfg.search.public_image_base_url, cache_dir / "public_images")
    return LocalImages(_corpus(cfg, corpus_dir), _index_dir(cfg))


def _index_dir(cfg: ToolsConfig) -> Path | None:
    """Where the local indexes live: a served corpus keeps them inside its export."""
    return Path(cfg.search.index_dir) if cfg.search.index_dir and not cfg.search.corpus else None


# ------------------------------------------------------------------------------ the tools


class _SearchTool(Tool):
    """What the two search tools share: a backend, the tool cache, how many hits, API calls."""

    def __init__(self, backend: Any, cache: ToolCache, top_k: int = 5) -> None:
        self.backend = backend
        self.cache = cache
        self.top_k = top_k
        self.api_calls = 0

    def stats(self) -> dict[str, float]:
        return {**self.cache.stats(), "api_calls": self.api_calls}

    async def aclose(self) -> None:
        client = getattr(self.backend, "client", None)
        if isinstance(client, SerperClient):
            await client.aclose()
        self.cache.close()


class TextSearchTool(_SearchTool):
    backend: TextBackend
    spec = ToolSpec(
        name="text_search",
        modes=("deepresearch",),
        description=(
            "Search the web for text. Give one or more queries; each returns a numbered list of results "
            "with title, link and snippet."
        ),
        parameters={
            "type": "object",
            "properties": {
                "queries": {"type": "array", "items": {"type": "string"}, "description": "Search queries."}
            },
            "required": ["queries"],
        },
        prompt="Web search; returns a numbered list of title, link and snippet per query.",
        text_usage='{"queries": ["..."]}',
        native_usage="(queries)",
        plan_parameter="query",
        plan_prompt="web search",
        plan_step="Search the web for {value}",
    )

    @classmethod
    def create(cls, cfg: ToolsConfig, env: ToolEnv) -> TextSearchTool:
        return cls(text_backend(cfg, env.corpus_dir), env.cache(cfg.search.cache), cfg.search.top_k)

    async def _run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        try:
            queries = string_list(arguments, "queries", self.name)
        except ArgumentError as exc:
            return Observation(error=str(exc))
        blocks, errors = [], []
        for query in queries:
            key = f"{self.top_k}:{normalise_query(query)}"

            async def fetch(query: str = query) -> list[dict[str, Any]]:
                self.api_calls += 1
                return [h.to_dict() for h in await self.backend.search(query, self.top_k)]

            try:
                rows = await self.cache.get_or_fetch(f"text:{self.backend.name}", key, fetch)
            except Exception as exc:
                errors.append(f'"{query}": {type(exc).__name__}: {exc}')
                blocks.append(f'Results for "{query}":\nSearch failed: {exc}')
                continue
            blocks.append(format_hits(f'Results for "{query}":', [SearchHit(**h) for h in rows]))
        return batch_observation(blocks, errors, len(queries))


def resolve_image(ref: str, ctx: ToolContext, backend: ImageBackend | None = None) -> Path:
    """`image_3.png`, `/input/image_3.png` (a sandbox path), a name without extension, or the URL
    of an image an earlier search showed (resolved by the backend, when it can, to its file)."""
    name = ref.strip()
    if name.startswith(("http://", "https://")):
        locate = getattr(backend, "locate", None)
        found = locate(name) if locate is not None else None
        if found is not None:
            return found
        known = ", ".join(ctx.images) or "none"
        raise ArgumentError(
            f"{ref!r} is not an image this search backend returned; pass an image of this conversation ({known})"
        )
    for prefix in ("/input/", "input/", "/output/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    candidates = [name, f"{name}.png"]
    for candidate in candidates:
        if candidate in ctx.images:
            return ctx.images[candidate]
    known = ", ".join(ctx.images) or "none"
    raise ArgumentError(f"unknown image {ref!r}; the images of this conversation are: {known}")


class ImageSearchTool(_SearchTool):
    backend: ImageBackend
    spec = ToolSpec(
        name="image_search",
        modes=("deepresearch",),
        description=(
            "Reverse image search. Give the names of images of this conversation (e.g. image_0.png, or a crop "
            "made by code such as image_2.png); each returns a numbered list of matching pages with title, link "
            "and image."
        ),
        parameters={
            "type": "object",
            "properties": {
                "image_paths": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Image names or paths.",
                }
            },
            "required": ["image_paths"],
        },
        prompt=(
            "Reverse image search for a whole image or a crop you saved; returns matching pages as a numbered "
            "list of title, link and image."
        ),
        text_usage='{"image_paths": ["image_0.png"]}',
        native_usage='(image_paths, e.g. ["image_0.png"])',
        plan_parameter="image_path",
        plan_step="Reverse image search {value} to identify what it shows",
        plan_prompt="reverse image search for the image or a crop of it",
        plan_label="Entity identified in Step {k}",
    )

    @classmethod
    def create(cls, cfg: ToolsConfig, env: ToolEnv) -> ImageSearchTool:
        backend = image_backend(cfg, env.corpus_dir, env.cache_dir)
        return cls(backend, env.cache(cfg.search.cache), cfg.search.top_k)

    async def _run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        try:
            refs = string_list(arguments, "image_paths", self.name, limit=5)
            paths = [resolve_image(ref, ctx, self.backend) for ref in refs]
        except ArgumentError as exc:
            return Observation(error=str(exc))
        blocks, errors = [], []
        for ref, path in zip(refs, paths, strict=True):
            header = f"Results for {ref.strip() if ref.strip().startswith(('http://', 'https://')) else Path(ref).name}:"
            try:
                key = f"{self.top_k}:{await asyncio.to_thread(image_key, path)}"

                async def fetch(path: Path = path) -> list[dict[str, Any]]:
                    self.api_calls += 1
                    return [h.to_dict() for h in await self.backend.search(path, self.top_k)]

                kind = f"image:{getattr(self.backend, 'cache_name', self.backend.name)}"
                rows = await self.cache.get_or_fetch(kind, key, fetch)
                hits = [SearchHit(**h) for h in rows]
            except Exception as exc:
                log.warning("image_search on %s (%s) failed: %s: %s", ref, path, type(exc).__name__, exc)
                message = public_error(exc, path, Path(ref).name)  # no run-folder path to the teacher
                errors.append(f"{ref}: {message}")
                blocks.append(f"{header}\nSearch failed: {message.split(': ', 1)[-1]}")
                continue
            blocks.append(format_hits(header, hits))
        return batch_observation(blocks, errors, len(refs))


def image_key(path: Path) -> str:
    """Cache key of an image: the digest of its bytes.

    Images reach the tool content-addressed (the run's image store, the sandbox's saved
    files), so equal images have equal bytes; hashing them costs a millisecond where a
    perceptual key would decode the image a second time for every lookup.
    """
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
