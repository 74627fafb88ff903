"""The one small interface every encyclopedia reader implements: pages by title, streamed.

A walk needs four things from a corpus: the titles (streamed, to pick seeds and to count
in-links), one page by title (its text, internal links once per mention, image refs), the bytes
of an image ref, and a URL per page to record as evidence. Readers of large dumps stream and
never hold a whole dump in memory; the per-title in-link counter is the one corpus-wide table.
"""

from __future__ import annotations

import collections
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

LEAD_CHARS = 1500


@dataclass
class Page:
    """One encyclopedia page as a walk reads it."""

    title: str
    text: str  # plain text, paragraphs separated by blank lines (the title not repeated)
    url: str  # the evidence URL recorded for a hop
    links: list[str] = field(default_factory=list)  # linked page titles, once per mention, in order
    images: list[str] = field(default_factory=list)  # refs `Corpus.image_bytes` reads
    shown_urls: list[str] = field(default_factory=list)  # URLs a reader of the page text sees

    def lead(self, chars: int = LEAD_CHARS) -> str:
        """The lead paragraphs (up to `chars`), where a mined question's answer must be stated."""
        out: list[str] = []
        for para in (p.strip() for p in self.text.split("\n\n")):
            if not para:
                continue
            if out and sum(len(p) for p in out) + len(para) > chars:
                break
            out.append(para)
        return "\n\n".join(out)[: max(chars, 1)]

    def mention_counts(self) -> collections.Counter[str]:
        return collections.Counter(self.links)


class Corpus(ABC):
    """A readable encyclopedia. `search_dir`: a folder with `pages.jsonl` (+ `images.jsonl`)
    that trajforge's local search tools index, when the corpus has one (the offline world)."""

    name: str = "corpus"
    search_dir: Path | None = None
    origin: str | None = None  # set when the corpus is served as a local web (corpus_web)

    @abstractmethod
    def titles(self) -> Iterator[str]:
        """Every article title, streamed."""

    @abstractmethod
    def page(self, title: str) -> Page | None:
        """The page titled `title` (redirects followed where the format has them), else None."""

    @abstractmethod
    def image_bytes(self, ref: str) -> bytes | None:
        """Bytes of one of a page's image refs, else None."""

    def pages(self) -> Iterator[Page]:
        for title in self.titles():
            page = self.page(title)
            if page is not None:
                yield page

    def inlinks(self) -> collections.Counter[str]:
        """Pages linking to each title (a pervasive page is linked from very many), one pass."""
        counts: collections.Counter[str] = collections.Counter()
        for page in self.pages():
            counts.update(set(page.links))
        return counts

    def image_url(self, ref: str) -> str:
        """The web address of an image ref ("" when the image has none)."""
        return ref if ref.startswith(("http://", "https://")) else ""

    def serve(self, path: str) -> tuple[str, str, bytes] | None:
        """(final path, MIME type, bytes) the local web answers at `origin` + `path`, else None.

        By default a page by title (`A_b` -> "A b") rendered as plain HTML: a reader that keeps
        no page markup (a MediaWiki dump) still serves what it knows.
        """
        page = self.page(unquote(path).replace("_", " "))
        if page is None:
            return None
        return path, "text/html", render_html(page).encode("utf-8")

    def close(self) -> None:
        """Release files the reader holds open (nothing by default)."""
        return None


def render_html(page: Page) -> str:
    """A page as minimal HTML: its title and paragraphs (escaped)."""
    from html import escape

    paras = "".join(f"<p>{escape(p.strip())}</p>" for p in page.text.split("\n\n") if p.strip())
    title = escape(page.title)
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{paras}</body></html>"


# ---------------------------------------------------------------------------- shared HTML reading

_WS_RE = re.compile(r"[ \t\r\f\v]+")
_URL_RE = re.compile(r"https?://[^\s)\"'<>]+")


@dataclass
class HtmlParts:
    title: str
    text: str
    hrefs: list[str]  # resolved against the page's own address, once per anchor
    images: list[str]  # resolved `src` of <img>


def parse_html(html: str | bytes, base: str = "") -> HtmlParts:
    """Title (<h1>, else <title>), paragraph text, anchors and images of an article page.

    Why lxml here and not trafilatura (the visit tool's extractor): a walk needs the anchors,
    which trafilatura drops; navigation, scripts and styles are left out either way.
    """
    import lxml.html

    root = lxml.html.fromstring(html if isinstance(html, bytes) else html.encode("utf-8"))
    for bad in root.xpath("//script|//style|//nav|//header|//footer"):
        bad.drop_tree()
    h1 = root.xpath("string(//h1)").strip()
    title = h1 or root.xpath("string(//title)").strip()
    paras, facts = [], []
    for node in root.xpath("//p|//li"):
        text = _WS_RE.sub(" ", node.text_content()).strip()
        if text:
            paras.append(text)
    for row in root.xpath("//table[contains(@class, 'infobox')]//tr"):  # after the prose: not the lead
        cells = [_WS_RE.sub(" ", c.text_content()).strip() for c in row.xpath("./th|./td")]
        if any(cells):
            facts.append(": ".join(c for c in cells if c))
    hrefs = [
        urljoin(base, a.get("href", ""))
        for a in root.xpath("//a[@href]")
        if not a.get("href", "").startswith("#")
    ]
    images = [urljoin(base, img.get("src", "")) for img in root.xpath("//img[@src]")]
    return HtmlParts(title=title, text="\n\n".join(paras + facts), hrefs=hrefs, images=images)


def urls_in(text: str) -> list[str]:
    return [u.rstrip(".,;") for u in _URL_RE.findall(text)]


def last_path_part(url: str) -> str:
    """`http://host/wiki/A_b` -> `A_b` (unquoted), the key most encyclopedias name pages by."""
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
