"""A MediaWiki XML export (a Wikipedia `pages-articles` dump, plain or .bz2) through mwxml, with
wikitext read by mwparserfromhell.

A dump has no random access, so one streaming pass writes what a walk reads (plain text,
links, image names, redirects) into a SQLite file; the dump is never held in memory.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from stages.readers.corpus.base import Corpus, Page

_IMAGE_NS = ("file:", "image:")
_SKIP_NS = ("category:", "template:", "help:", "wikipedia:", "portal:", "special:", "user:", "talk:")


def _open(path: Path):
    if path.name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _normal_title(title: str) -> str:
    title = " ".join(title.replace("_", " ").split())
    return title[:1].upper() + title[1:]


def wikitext_parts(text: str) -> tuple[str, list[str], list[str]]:
    """(plain text, linked titles once per mention, image file names) of one page's wikitext."""
    import mwparserfromhell

    code = mwparserfromhell.parse(text or "")
    links, images = [], []
    for link in code.filter_wikilinks():
        target = str(link.title).split("#", 1)[0].strip()
        lowered = target.lower().lstrip(":")
        if lowered.startswith(_IMAGE_NS):
            images.append(_normal_title(target.split(":", 1)[1]))
        elif target and not lowered.startswith(_SKIP_NS) and ":" not in lowered[:12]:
            links.append(_normal_title(target))
    hidden = (*_IMAGE_NS, "category:")  # pictures and categories are not prose
    for node in code.filter_wikilinks(matches=lambda n: str(n.title).strip().lower().startswith(hidden)):
        with contextlib.suppress(ValueError):
            code.remove(node)
    plain = code.strip_code(normalize=True, collapse=True)
    paras = [" ".join(p.split()) for p in plain.split("\n\n")]
    return "\n\n".join(p for p in paras if p), links, images


class XmlDumpCorpus(Corpus):
    """`path`: the dump; `images_dir`: a folder holding the dump's image files by name (optional);
    `cache_dir`: where the page table goes (default: a temporary folder)."""

    def __init__(
        self,
        path: str | Path,
        images_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        origin: str | None = None,
    ):
        try:
            import mwxml  # noqa: F401
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ImportError(
                "reading XML dumps needs mwxml and mwparserfromhell (pip install mwxml mwparserfromhell)"
            ) from exc
        self.path = Path(path)
        self.name = self.path.name.split(".")[0]
        self.images_dir = Path(images_dir) if images_dir else None
        self._tmp = None
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="trajforge-dump-")
            cache_dir = self._tmp.name
        self.db = sqlite3.connect(Path(cache_dir) / f"{self.name}.pages.sqlite", check_same_thread=False)
        self.base_url = "https://wiki.invalid/wiki/"
        self._load()
        self.origin = origin
        if origin is not None:  # served as a local web: pages at origin + title, images under images/
            self.base_url = origin

    def image_url(self, ref: str) -> str:
        return (
            f"{self.origin}images/{quote(ref.replace(' ', '_'))}" if self.origin and self.images_dir else ""
        )

    def _load(self) -> None:
        import mwxml

        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS pages (title TEXT PRIMARY KEY, text TEXT, links TEXT, images TEXT);"
            "CREATE TABLE IF NOT EXISTS redirects (title TEXT PRIMARY KEY, target TEXT);"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
        )
        with _open(self.path) as handle:
            try:
                dump = mwxml.Dump.from_file(handle)
            except Exception as exc:  # mwxml raises its own errors for a malformed header
                raise ValueError(f"{self.path}: not a MediaWiki XML export ({exc})") from None
            base = getattr(dump.site_info, "base", None) or ""
            if base.startswith("http") and "/" in base:
                self.base_url = base.rsplit("/", 1)[0] + "/"
            batch: list[tuple[str, str, str, str]] = []
            for page in dump:
                if page.namespace != 0:
                    continue
                text = None
                for revision in page:
                    text = revision.text
                title = _normal_title(page.title)
                if page.redirect:
                    self.db.execute("INSERT OR REPLACE INTO redirects VALUES (?, ?)",
                                    (title, _normal_title(page.redirect)))  # fmt: skip
                    continue
                plain, links, images = wikitext_parts(text or "")
                batch.append((title, plain, json.dumps(links), json.dumps(images)))
                if len(batch) >= 500:
                    self.db.executemany("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?)", batch)
                    batch.clear()
            self.db.executemany("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?)", batch)
        self.db.commit()

    def titles(self) -> Iterator[str]:
        for (title,) in self.db.execute("SELECT title FROM pages ORDER BY rowid"):
            yield title

    def resolve(self, title: str) -> str:
        title = _normal_title(title)
        row = self.db.execute("SELECT target FROM redirects WHERE title = ?", (title,)).fetchone()
        return row[0] if row else title

    def page(self, title: str) -> Page | None:
        title = self.resolve(title)
        row = self.db.execute("SELECT text, links, images FROM pages WHERE title = ?", (title,)).fetchone()
        if row is None:
            return None
        links = [self.resolve(t) for t in json.loads(row[1])]
        known = {t for t in links if self.db.execute("SELECT 1 FROM pages WHERE title = ?", (t,)).fetchone()}
        return Page(
            title=title,
            text=row[0],
            url=self.base_url + quote(title.replace(" ", "_")),
            links=[t for t in links if t in known and t != title],
            images=json.loads(row[2]),
        )

    def image_bytes(self, ref: str) -> bytes | None:
        if self.images_dir is None:
            return None
        for name in (ref, ref.replace(" ", "_")):
            path = self.images_dir / name
            if path.is_file():
                return path.read_bytes()
        return None

    def close(self) -> None:
        self.db.close()
        if self._tmp is not None:
            self._tmp.cleanup()
