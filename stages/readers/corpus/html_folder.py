"""A folder of HTML pages (one article per file), and the offline world's corpus built on it.

Pages are named by file stem; a link counts when its last path part (minus `.html`) names
another file in the folder. One pass over the folder maps stems to titles (heads only are kept,
never the pages), so a walk opens one file per page it visits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from stages.readers.corpus.base import Corpus, Page, last_path_part, parse_html, urls_in

WORLD_HOST = "world.trajforge.local"


class HtmlFolder(Corpus):
    """`folder/*.html` (recursively); `base_url` + stem is each page's evidence URL. `origin`:
    served as a local web instead, every file at `origin` + its path in the folder."""

    def __init__(self, folder: str | Path, base_url: str | None = None, origin: str | None = None) -> None:
        self.folder = Path(folder)
        self.origin = origin
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: not a folder of HTML pages")
        self.name = self.folder.name
        self.base_url = base_url or self.folder.resolve().as_uri() + "/"
        self._files: dict[str, Path] = {}  # stem -> file
        self._titles: dict[str, str] = {}  # stem -> title
        self._stems: dict[str, str] = {}  # title -> stem
        for path in sorted(self.folder.rglob("*.html")):
            if path.stem == "index":
                continue
            title = parse_html(path.read_bytes()).title or path.stem.replace("_", " ")
            self._files[path.stem] = path
            self._titles[path.stem] = title
            self._stems.setdefault(title, path.stem)
        if not self._files:
            raise FileNotFoundError(f"{self.folder}: no .html pages found")

    def url_of(self, stem: str) -> str:
        if self.origin is not None:
            return self.origin + quote(self._files[stem].relative_to(self.folder).as_posix())
        return self.base_url + quote(stem) + ("" if self.base_url.startswith("http") else ".html")

    def titles(self) -> Iterator[str]:
        yield from self._titles.values()

    def page(self, title: str) -> Page | None:
        stem = self._stems.get(title)
        if stem is None:
            return None
        url = self.url_of(stem)
        parts = parse_html(self._files[stem].read_bytes(), base=url)
        links = []
        for href in parts.hrefs:
            target = last_path_part(href).removesuffix(".html")
            if target in self._titles and target != stem:
                links.append(self._titles[target])
        return Page(
            title=parts.title or title,
            text=parts.text,
            url=url,
            links=links,
            images=parts.images,
            shown_urls=urls_in(parts.text),
        )

    def image_bytes(self, ref: str) -> bytes | None:
        if self.origin is not None and ref.startswith(self.origin):
            found = self.serve(unquote(ref.removeprefix(self.origin)))
            return found[2] if found else None
        if ref.startswith("file://"):
            path = Path(ref.removeprefix("file://"))
            return path.read_bytes() if path.is_file() else None
        return None

    def image_url(self, ref: str) -> str:
        return ref if self.origin is not None and ref.startswith(self.origin) else super().image_url(ref)

    def serve(self, path: str) -> tuple[str, str, bytes] | None:
        """A file of the folder (never outside it), with the MIME type its name implies."""
        import mimetypes

        root = self.folder.resolve()
        target = (root / path).resolve()
        if not target.is_file() or not target.is_relative_to(root):
            return None
        mime = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return path, mime, target.read_bytes()


class WorldCorpus(HtmlFolder):
    """The offline world's encyclopedia (WORLD/corpus): pages as served, images, search index."""

    def __init__(self, world_dir: str | Path) -> None:
        world_dir = Path(world_dir)
        corpus = world_dir / "corpus"
        if not (corpus / "html").is_dir() or not (corpus / "pages.jsonl").is_file():
            raise FileNotFoundError(
                f"{world_dir} holds no world corpus; build one with `trajforge world build --out {world_dir}`"
            )
        super().__init__(corpus / "html", base_url=f"http://{WORLD_HOST}/wiki/")
        self.name = f"world:{world_dir.name}"
        self.world_dir = world_dir
        self.search_dir = corpus
        self._images = {
            json.loads(line)["page_url"]: corpus / json.loads(line)["path"]
            for line in (corpus / "images.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        }

    def image_bytes(self, ref: str) -> bytes | None:
        prefix = f"http://{WORLD_HOST}/"
        if not ref.startswith(prefix):
            return None
        path = self.search_dir / ref.removeprefix(prefix)  # type: ignore[operator]
        return path.read_bytes() if path.is_file() else None

    def image_path(self, ref: str) -> Path | None:
        """The file behind an image ref (the world's oracle recognises tasks by these files)."""
        prefix = f"http://{WORLD_HOST}/"
        path = self.search_dir / ref.removeprefix(prefix)  # type: ignore[operator]
        return path if ref.startswith(prefix) and path.is_file() else None
