"""Linear-time scans of raw HTML, for what web_visit needs before and beside trafilatura.

Regexes like `<title[^>]*>(.*?)</title>` restart at every `<title` and scan to the end of the
page when the tag is never closed: quadratic, so 160 KB of unclosed `<title>` tags took 20 s
and 2 MB pinned a CPU for minutes. Every scan here only moves forward (str.find from the last
position), so each costs one pass over the page, however malformed it is.
"""

from __future__ import annotations

import re

_BLOCKS = ("script", "style")
_TAG = re.compile(r"<[^<>]*>")  # stops at the next '<': linear even with no '>' anywhere
_SPACE = re.compile(r"\s+")
TITLE_CHARS = 300


def title_of(html: str, lower: str | None = None) -> str:
    """The first <title>'s text (cut at TITLE_CHARS; an unclosed one ends at the next tag)."""
    lower = html.lower() if lower is None else lower
    start = lower.find("<title")
    if start < 0:
        return ""
    open_end = lower.find(">", start)
    if open_end < 0:
        return ""
    close = lower.find("</title", open_end, open_end + 1 + 64 * TITLE_CHARS)
    if close < 0:
        close = lower.find("<", open_end + 1, open_end + 1 + 64 * TITLE_CHARS)
    end = close if close >= 0 else open_end + 1 + TITLE_CHARS
    return _SPACE.sub(" ", html[open_end + 1 : end]).strip()[:TITLE_CHARS]


def strip_blocks(html: str, lower: str | None = None) -> str:
    """`html` without <script> and <style> elements; an unclosed one drops the rest of the page."""
    lower = html.lower() if lower is None else lower
    parts: list[str] = []
    pos = 0
    upcoming = {tag: lower.find(f"<{tag}", 0) for tag in _BLOCKS}
    while True:
        for tag, at in upcoming.items():  # a cached position behind `pos` is looked up again
            if 0 <= at < pos:
                upcoming[tag] = lower.find(f"<{tag}", pos)
        found = [(at, tag) for tag, at in upcoming.items() if at >= 0]
        if not found:
            parts.append(html[pos:])
            break
        start, tag = min(found)
        parts.append(html[pos:start])
        close = lower.find(f"</{tag}", start + len(tag) + 1)
        if close < 0:
            break
        end = lower.find(">", close)
        if end < 0:
            break
        pos = end + 1
    return " ".join(parts)


def visible_text(html: str) -> str:
    """Text with scripts, styles and tags removed and whitespace collapsed (linear)."""
    return _SPACE.sub(" ", _TAG.sub(" ", strip_blocks(html))).strip()
