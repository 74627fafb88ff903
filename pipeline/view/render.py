"""The one Jinja2 environment of the viewer: templates from the package, autoescaped, with the
filters pages share (image URLs, syntax highlighting)."""

from __future__ import annotations

import functools
import json
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import JsonLexer, PythonLexer

from pipeline.store import ImageStore

HIGHLIGHT_CLASS = "hl"


@functools.lru_cache(maxsize=1)
def _formatter() -> HtmlFormatter:
    return HtmlFormatter(cssclass=HIGHLIGHT_CLASS, nowrap=False)


def highlight_css() -> str:
    """Pygments' colours for `.hl` blocks (served as static/highlight.css)."""
    return _formatter().get_style_defs(f".{HIGHLIGHT_CLASS}")


def code_block(tool_name: str | None, arguments: dict[str, Any], raw_arguments: str | None) -> Markup:
    """A tool call as highlighted source: Python for `code`, JSON for every other tool."""
    if isinstance(arguments.get("code"), str):  # any tool whose argument is code
        return Markup(highlight(arguments["code"], PythonLexer(), _formatter()))
    text = json.dumps(arguments, indent=2, ensure_ascii=False) if arguments else (raw_arguments or "")
    return Markup(highlight(text, JsonLexer(), _formatter()))


def image_url(images: ImageStore, ref: str) -> str:
    """`img/<sha256><ext>`: the same name served and in a written site (relative to the root)."""
    return f"img/{ref}{images.path(ref).suffix}"


def environment(images: ImageStore) -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline.view", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["img"] = functools.partial(image_url, images)
    return env
