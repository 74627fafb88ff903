"""Every page of the viewer by path: the server answers from here, `write` saves the same files.

Paths: `index.html` (overview), `list.html`, `data/list-NNNN.js` (list index chunks),
`t/<trajectory_id>.html`, `task/<task_id>.html`, `img/<sha256>.<ext>`, `static/<file>`.
"""

from __future__ import annotations

import importlib.resources
import mimetypes
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.store import atomic_write_bytes
from pipeline.view import listing, overview, rollouts, trajectory
from pipeline.view.data import RunData
from pipeline.view.render import environment, highlight_css

_IMG = re.compile(r"^img/([0-9a-f]{64})\.(png|jpg|webp|gif)$")
_CHUNK = re.compile(r"^data/list-(\d{4})\.js$")
_ID = re.compile(r"^[A-Za-z0-9._:@+=-]{1,200}$")


@dataclass
class Page:
    body: bytes
    content_type: str


class Site:
    """One run's viewer. Pages are rendered on request (served) or all at once (written)."""

    def __init__(self, data: RunData):
        self.data = data
        self.env = environment(data.store.images)

    def _base(self, depth: int) -> dict[str, str]:
        return {"root": "../" * depth, "run_name": self.data.root.name}

    def page(self, path: str) -> Page | None:
        """The page at `path` (relative, no leading slash), or None when there is none."""
        path = path.lstrip("/") or "index.html"
        html: str | None = None
        if path == "index.html":
            html = overview.render(self.env, self.data, self._base(0))
        elif path == "list.html":
            html = listing.render(self.env, self.data, self._base(0))
        elif path.startswith("t/") and path.endswith(".html") and _ID.match(path[2:-5]):
            html = trajectory.render(self.env, self.data, path[2:-5], self._base(1))
        elif path.startswith("task/") and path.endswith(".html") and _ID.match(path[5:-5]):
            html = rollouts.render(self.env, self.data, path[5:-5], self._base(1))
        elif match := _CHUNK.match(path):
            js = listing.chunk_js(self.data, int(match.group(1)))
            return None if js is None else Page(js.encode(), "text/javascript; charset=utf-8")
        elif match := _IMG.match(path):
            file = self.data.store.images.path(match.group(1))
            if file.exists() and file.suffix == f".{match.group(2)}":
                return Page(
                    file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                )
        elif path.startswith("static/"):
            return _static(path[len("static/") :])
        return None if html is None else Page(html.encode(), "text/html; charset=utf-8")

    def write(self, out: str | Path, progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
        """Write the whole viewer into `out` (opens from disk: relative links, script-tag data)."""
        out = Path(out)
        start = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        names = ["index.html", "list.html", *(f"static/{n}" for n in _STATIC_FILES)]
        names += [f"data/list-{n:04d}.js" for n in range(listing.chunk_count(self.data))]
        entries = sorted(self.data.entries, key=lambda e: e.shard)  # one shard read per shard
        names += [f"t/{e.id}.html" for e in entries]
        names += [f"task/{t}.html" for t in sorted({e.task_id for e in entries})]
        for done, name in enumerate(names, 1):
            page = self.page(name)
            if page is not None:
                atomic_write_bytes(out / name, page.body)
            if progress:
                progress(done, len(names))
        copied = 0
        for file in self.data.store.images.local_files():
            if file.suffix in (".png", ".jpg", ".webp", ".gif") and not file.name.startswith("."):
                target = out / "img" / file.name
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, target)
                copied += 1
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return {
            "pages": len(names),
            "images": copied,
            "trajectories": len(entries),
            "bytes": size,
            "bytes_per_trajectory": round(size / max(len(entries), 1)),
            "wall_s": round(time.perf_counter() - start, 3),
        }


_STATIC_FILES = ("view.css", "view.js", "list.js", "highlight.css")


def _static(name: str) -> Page | None:
    if name not in _STATIC_FILES:
        return None
    if name == "highlight.css":
        return Page(highlight_css().encode(), "text/css; charset=utf-8")
    body = importlib.resources.files("pipeline.view").joinpath("static", name).read_bytes()
    kind = "text/css" if name.endswith(".css") else "text/javascript"
    return Page(body, f"{kind}; charset=utf-8")
