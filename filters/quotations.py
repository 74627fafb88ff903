"""Quotations a thought says it read, for the grounding check.

A quotation is text between matched marks: “…”, ‘…’, «…», "…" or '…', where a single mark only
counts at a word's edge (the ’ of "page’s" is an apostrophe, not a mark), the text hugs its
marks (`" and found a page titled "` is the gap between two quotations, not one) and holds at
least three characters, two of them letters or digits. It counts as a claim of reading when a
reading verb introduces it ("titled", "named", "reads", "says", ...) and the sentence does not
guess ("maybe it is called "X"", "from what I remember, a town called "X"", "Let me search for
"X"", a question): a guess or a query names what the agent has not read yet, by design.

Quotations are compared by their words (casefolded, marks and punctuation aside), so a quotation
whose punctuation differs from the page, that stops before the page's sentence does, or that
elides ("The livre... was the currency of ...") still reads as the same words.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_PAIRS = {"“": "”", "‘": "’", "«": "»", "„": "“", '"': '"', "'": "'"}
_SINGLE = {"‘", "’", "'"}
_READING = re.compile(
    r"\b(?:titled|title(?:d| is| reads)?|named|called|reads|reading|read|says|said|shows|showed|states|stated|"
    r"labell?ed|label(?: is| reads)?|text(?: is| reads)?|heading|caption)\s*:?\s*$",
    re.IGNORECASE,
)
_GUESS = re.compile(
    r"\b(?:maybe|perhaps|might|could|possibly|probably|guess|suppose|assume|remember|recall|think|"
    r"believe|if|whether|unsure|not sure|alternatively|search(?:ing)? for|look(?:ing)? for|"
    r"hypothe\w*|something like)\b",
    re.IGNORECASE,
)
_SENTENCE_START = re.compile(r"(?:[.!?]\s|\n)(?=[^.!?\n]*$)")


def _is_edge(text: str, at: int, opening: bool) -> bool:
    """Whether the single mark at `at` sits at a word's edge (else it is an apostrophe)."""
    before = text[at - 1] if at > 0 else " "
    after = text[at + 1] if at + 1 < len(text) else " "
    if opening:
        return not before.isalnum() and not after.isspace()
    return not after.isalnum() and not before.isspace()


def _content_ok(content: str, min_chars: int) -> bool:
    return (
        len(content) >= min_chars
        and content == content.strip()
        and sum(c.isalnum() for c in content) >= 2
        and "\n" not in content
    )


def quotations(text: str, *, min_chars: int = 3, max_chars: int = 300) -> list[tuple[int, str]]:
    """(offset, text) of each quotation in `text`, marks matched pairwise (a reader of page text
    quotes titles; an image claim quotes a code as short as two characters)."""
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(text):
        mark = text[i]
        closing = _PAIRS.get(mark)
        if closing is None or (mark in _SINGLE and not _is_edge(text, i, opening=True)):
            i += 1
            continue
        j = i + 1
        end = -1
        while j < len(text) and j - i <= max_chars and text[j] != "\n":
            if text[j] == closing and (closing not in _SINGLE or _is_edge(text, j, opening=False)):
                end = j
                break
            j += 1
        if end > 0 and _content_ok(text[i + 1 : end], min_chars):
            found.append((i, text[i + 1 : end]))
            i = end + 1
        else:
            i += 1
    return found


def read_claims(thought: str) -> list[str]:
    """The quotations a thought says it read (introduced by a reading verb, not guessed)."""
    claims = []
    for at, quoted in quotations(thought):
        before = thought[max(0, at - 300) : at]
        if not _READING.search(before[-40:]):
            continue
        starts = list(_SENTENCE_START.finditer(before))
        sentence = before[starts[-1].end() :] if starts else before
        after = thought[at + len(quoted) + 2 :]
        tail = re.match(r"[^.!\n]*[.!?\n]?", after)
        if _GUESS.search(sentence) or (tail is not None and tail.group(0).rstrip().endswith("?")):
            continue
        claims.append(quoted)
    return claims


@lru_cache(maxsize=8192)
def words_of(text: str) -> str:
    """The words of a text, casefolded and space-joined, with spaces at both ends."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'").replace("‘", "'")
    return " " + " ".join(re.findall(r"[^\W_]+(?:'[^\W_]+)*", text)) + " "


def was_read(quoted: str, seen: str) -> bool:
    """Whether the quotation's words appear together in what was seen; an elision ("...", "…")
    splits it into parts that must each appear."""
    page = words_of(seen)
    parts = [words_of(part) for part in re.split(r"\.{3}|…", quoted)]
    return all(part in page for part in parts if part.strip())
