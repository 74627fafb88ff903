"""Any encyclopedia the walk reads (a ZIM, a MediaWiki dump, a folder of HTML) as a local web.

R1V4 searched "a locally deployed encyclopedia". `index_corpus` streams a corpus once into the
layout the local search backends read (`pages.jsonl`, `images.jsonl`, `images/`) and builds
their BM25 and pHash indexes beside it, in `<cache>/web-<name>-<key>/` where the key is the
source's content hash (a file: sha256, remembered per size and mtime) or, for a folder, a hash of
its listing (paths, sizes, mtimes); later runs reuse it. Every page and image sits at its own URL
under a stable local origin (`http://corpus.trajforge.local/<name>/` + its path in the source),
the URL search hits link to and the walk records as evidence; `CorpusWeb` answers `web_visit`
for that origin in-process with the very bytes an HTTP server of the corpus would send.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from stages.readers.corpus import open_corpus, resolve_kind
from stages.readers.corpus.base import Corpus, Page, render_html
from stages.tools.search.local_corpus import content_hash, ensure_index, read_at

log = logging.getLogger(__name__)

ORIGIN_HOST = "corpus.trajforge.local"
URLS = "urls.sqlite"
INLINKS = "inlinks.json"  # pages linking to each title, counted in the same pass (a walk reuses it)
MIN_IMAGE_SIDE = 64  # icons and bullets are no pictures of the page
IMAGE_TYPES = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


def corpus_name(source: Path) -> str:
    """A URL-safe name for a corpus: its file name without extensions, lowercased."""
    stem = source.name.split(".")[0] if source.is_file() else source.name
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:48] or "corpus"


def origin_for(source: Path) -> str:
    """The local origin a corpus is served at: `http://corpus.trajforge.local/<name>/`."""
    return f"http://{ORIGIN_HOST}/{corpus_name(source)}/"


def source_key(source: Path, cache: Path) -> str:
    """What the index is keyed by: a file's content hash, a folder's listing hash.

    A file's hash is remembered in `cache` by path, size and mtime (its own folder may be
    read-only, and hashing a whole Wikipedia in every worker would take minutes each).
    """
    if source.is_file():
        info = source.stat()
        memo = cache / ".keys" / hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:24]
        stamp = f"{info.st_size}:{info.st_mtime_ns}"
        with contextlib.suppress(OSError, ValueError):
            saved, digest = memo.read_text().split()
            if saved == stamp:
                return digest
        digest = content_hash(source)
        with contextlib.suppress(OSError):
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(f"{stamp} {digest}")
        return digest
    sha = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file() and "/." not in p.as_posix()):
        info = path.stat()
        sha.update(f"{path.relative_to(source).as_posix()}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return sha.hexdigest()[:16]


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trajforge" / "corpora"


@dataclass
class ExportStats:
    """What one pass over a corpus wrote and dropped (said in `stats.json` and by `corpus index`)."""

    pages: int = 0
    broken_pages: int = 0
    empty_pages: int = 0
    images: int = 0  # (page, image) records
    image_files: int = 0  # distinct image files
    images_dropped: int = 0  # unreadable, vector or smaller than MIN_IMAGE_SIDE


def _image_ext(data: bytes) -> str | None:
    """The raster format's extension when `data` is a picture of at least MIN_IMAGE_SIDE px."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if min(image.size) < MIN_IMAGE_SIDE:
                return None
            return IMAGE_TYPES.get(image.format or "")
    except Exception:  # PIL raises many kinds for bytes that are no raster image
        return None


def export_corpus(corpus: Corpus, out: Path) -> ExportStats:
    """Stream `corpus` into `out/pages.jsonl`, `out/images.jsonl`, `out/images/` and the in-link
    counts `out/inlinks.json` (a walk then need not parse every page again).

    One page at a time; a page the reader cannot parse costs that page (counted). Image files
    are stored once by content hash; a record ties each to every page that shows it.
    """
    stats = ExportStats()
    inlinks: collections.Counter[str] = collections.Counter()  # the walk's pervasive-page table
    seen: dict[str, str] = {}  # image ref -> stored path ("" when dropped): refs repeat across pages
    (out / "images").mkdir(parents=True, exist_ok=True)
    urls = sqlite3.connect(out / URLS)  # page URL -> its line in pages.jsonl (serves dumps without markup)
    urls.execute("CREATE TABLE pages (url TEXT PRIMARY KEY, offset INTEGER)")
    with (
        (out / "pages.jsonl").open("wb") as pages,
        (out / "images.jsonl").open("w", encoding="utf-8") as images,
    ):
        for title in corpus.titles():
            try:
                page = corpus.page(title)
            except Exception as exc:  # one broken page costs that page
                stats.broken_pages += 1
                log.warning("corpus page %r unreadable: %s", title, exc)
                continue
            if page is None or not page.text.strip():
                stats.empty_pages += 1
                continue
            urls.execute("INSERT OR IGNORE INTO pages VALUES (?, ?)", (unquote(page.url), pages.tell()))
            record = {"title": page.title, "url": page.url, "text": page.text}
            pages.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
            stats.pages += 1
            inlinks.update(set(page.links))
            for ref in dict.fromkeys(page.images):
                if ref not in seen:
                    seen[ref] = _store_image(corpus, ref, out, stats)
                if seen[ref]:
                    record = {"path": seen[ref], "page_url": page.url, "title": page.title,
                              "url": corpus.image_url(ref)}  # fmt: skip
                    images.write(json.dumps(record, ensure_ascii=False) + "\n")
                    stats.images += 1
    (out / INLINKS).write_text(json.dumps(inlinks, ensure_ascii=False))
    urls.commit()
    urls.close()
    return stats


def _store_image(corpus: Corpus, ref: str, out: Path, stats: ExportStats) -> str:
    try:
        data = corpus.image_bytes(ref)
    except Exception:  # a reader error on one image costs that image
        data = None
    ext = _image_ext(data) if data else None
    if ext is None:
        stats.images_dropped += 1
        return ""
    digest = hashlib.sha256(data).hexdigest()  # type: ignore[arg-type]
    rel = f"images/{digest[:2]}/{digest[2:18]}.{ext}"
    target = out / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)  # type: ignore[arg-type]
        stats.image_files += 1
    return rel


def index_corpus(source: Path, kind: str = "auto", cache: Path | None = None) -> Path:
    """The indexed local web of `source` (built once, reused by every later run): a folder the
    local text and image search backends read, with both indexes already built."""
    from stages.tools.search.image_index import LocalImageIndex
    from stages.tools.search.text_index import LocalTextIndex

    source = Path(source)
    if resolve_kind(source, kind) == "world":
        raise ValueError(f"{source} is an offline world: it serves itself (no `corpus index` needed)")
    root = cache or default_cache()

    def build(out: Path) -> None:
        corpus = open_corpus(source, kind, origin=origin_for(source))
        try:
            stats = export_corpus(corpus, out)
        finally:
            corpus.close()
        if stats.pages == 0:
            raise ValueError(
                f"{source}: no readable pages; is it a ZIM, a MediaWiki dump or a folder of HTML?"
            )
        LocalTextIndex(out, out / "index").search("warm", 1)  # both indexes built now, not at a first search
        if stats.images:
            LocalImageIndex(out, out / "index").locate("")  # loading it builds it
        info = {"source": str(source.resolve()), "origin": origin_for(source), **asdict(stats)}
        (out / "stats.json").write_text(json.dumps(info, indent=1))

    return ensure_index(root, f"web-{corpus_name(source)}", source, build, key=source_key(source, root))


def index_stats(folder: Path) -> dict:
    return json.loads((folder / "stats.json").read_text())


class CorpusWeb:
    """The pages and images of a corpus, answered in-process for its local origin.

    A ZIM or a folder of HTML is served from the source itself (its own markup, its pictures);
    a MediaWiki dump, which has no random access and keeps no markup, from its index: each page
    as plain HTML of its title and paragraphs.
    """

    def __init__(self, source: Path, kind: str = "auto", cache: Path | None = None) -> None:
        source = Path(source)
        self.origin = origin_for(source)
        self.corpus: Corpus | None = None
        self.folder: Path | None = None
        self._urls: sqlite3.Connection | None = None
        if resolve_kind(source, kind) == "xml":
            self.folder = index_corpus(source, kind, cache)
            self._urls = sqlite3.connect(self.folder / URLS, check_same_thread=False)
        else:
            self.corpus = open_corpus(source, kind, origin=self.origin)

    def handles(self, url: str) -> bool:
        """Only the corpus origin itself (scheme, host, and the name's path), nothing else."""
        parts = urlsplit(url)
        return parts.scheme == "http" and parts.netloc == ORIGIN_HOST and url.startswith(self.origin)

    def fetch(self, url: str) -> tuple[str, str, bytes] | None:
        """(final URL, MIME type, bytes) at `url`, following the corpus's redirects; None: 404."""
        if self._urls is not None:
            return self._indexed(url)
        assert self.corpus is not None
        path = unquote(urlsplit(url).path).removeprefix(urlsplit(self.origin).path)
        found = self.corpus.serve(path)
        if found is None:
            return None
        final, mime, body = found
        return self.origin + quote(final), mime, body

    def _indexed(self, url: str) -> tuple[str, str, bytes] | None:
        assert self._urls is not None and self.folder is not None
        key = unquote(url.split("#", 1)[0].split("?", 1)[0])
        row = self._urls.execute("SELECT offset FROM pages WHERE url = ?", (key,)).fetchone()
        if row is None:
            return None
        record = read_at(self.folder / "pages.jsonl", int(row[0]))
        page = Page(title=record["title"], text=record["text"], url=record["url"])
        return record["url"], "text/html", render_html(page).encode("utf-8")

    def close(self) -> None:
        if self.corpus is not None:
            self.corpus.close()
        if self._urls is not None:
            self._urls.close()
