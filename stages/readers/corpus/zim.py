"""A Kiwix ZIM file (a whole Wikipedia in one file) through libzim: random access by title or
path, articles streamed by entry id, images read from the archive itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

from stages.readers.corpus.base import Corpus, Page, parse_html, urls_in

_ROOT = "http://zim.invalid/"  # a base to resolve an article's relative links against


class ZimCorpus(Corpus):
    """`path`: a .zim file; `base_url`: where a page's evidence URL points (default: the archive's
    `Source` metadata as `https://SOURCE/wiki/`, else `zim://FILE/`). `origin`: serve the archive
    as a local web instead (stages.tools.search.corpus_web): every entry, pages and images, at
    `origin` + its path in the archive, so the pages' relative links resolve as a browser's would."""

    def __init__(self, path: str | Path, base_url: str | None = None, origin: str | None = None) -> None:
        try:
            from libzim.reader import Archive
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ImportError("reading ZIM files needs libzim: pip install 'libzim>=3.4,<4'") from exc
        self.path = Path(path)
        try:
            self.archive = Archive(str(self.path))
        except RuntimeError as exc:
            raise ValueError(f"{self.path}: not a readable ZIM file ({exc})") from None
        self.name = self.path.stem
        self.origin = origin
        if origin is not None:
            base_url = origin
        elif base_url is None:
            source = self._metadata("Source")
            base_url = f"https://{source.strip('/')}/wiki/" if source else f"zim://{self.path.name}/"
        self.base_url = base_url

    def _metadata(self, key: str) -> str:
        try:
            return bytes(self.archive.get_metadata(key)).decode("utf-8", "replace")
        except (KeyError, RuntimeError):
            return ""

    def _entries(self) -> Iterator:
        for i in range(self.archive.all_entry_count):
            entry = self.archive._get_entry_by_id(i)
            if entry.is_redirect:
                continue
            try:
                if entry.get_item().mimetype.startswith("text/html"):
                    yield entry
            except RuntimeError:
                continue

    def titles(self) -> Iterator[str]:
        for entry in self._entries():
            yield entry.title

    def _entry(self, title: str):
        for lookup in (self.archive.get_entry_by_title, self.archive.get_entry_by_path):
            for key in (title, title.replace(" ", "_")):
                try:
                    entry = lookup(key)
                except KeyError:
                    continue
                return entry.get_redirect_entry() if entry.is_redirect else entry
        return None

    def _at(self, path: str):
        """The entry at `path`, redirects followed, else None."""
        try:
            entry = self.archive.get_entry_by_path(path)
        except KeyError:
            return None
        return entry.get_redirect_entry() if entry.is_redirect else entry

    def _title_at(self, path: str) -> str | None:
        entry = self._at(path)
        return entry.title if entry is not None else None

    def page(self, title: str) -> Page | None:
        entry = self._entry(title)
        if entry is None:
            return None
        item = entry.get_item()
        if not item.mimetype.startswith("text/html"):
            return None
        base = _ROOT + quote(entry.path)
        parts = parse_html(bytes(item.content), base=base)
        links = []
        for href in parts.hrefs:
            if not href.startswith(_ROOT):
                continue
            target = self._title_at(unquote(urlsplit(href).path.lstrip("/")))
            if target and target != entry.title:
                links.append(target)
        images = [unquote(urlsplit(src).path.lstrip("/")) for src in parts.images if src.startswith(_ROOT)]
        url = self.entry_url(entry.path)
        return Page(
            title=entry.title,
            text=parts.text,
            url=url,
            links=links,
            images=images,
            shown_urls=urls_in(parts.text),
        )

    def entry_url(self, path: str) -> str:
        """The URL of an archive entry: under the local origin its whole path, else the page name."""
        if self.origin is not None:
            return self.origin + quote(path)
        return self.base_url + quote(path.rsplit("/", 1)[-1])

    def image_url(self, ref: str) -> str:
        return self.entry_url(ref) if self.origin is not None else ""

    def serve(self, path: str) -> tuple[str, str, bytes] | None:
        """(final path, MIME type, bytes) of the entry at `path` (redirects followed), else None."""
        entry = self._at(path)
        if entry is None:
            return None
        item = entry.get_item()
        return entry.path, item.mimetype, bytes(item.content)

    def image_bytes(self, ref: str) -> bytes | None:
        try:
            entry = self.archive.get_entry_by_path(ref)
        except KeyError:
            return None
        return bytes(entry.get_item().content)


__all__ = ["ZimCorpus", "urljoin"]
