"""Validation a walked question passes before it is accepted: no leaked names, a concise answer
that the evidence states. Pure functions over strings (the walk and the tests share them)."""

from __future__ import annotations

import re
import unicodedata

MAX_ANSWER_WORDS = 5
MAX_ANSWER_CHARS = 60


def normalise(text: str) -> str:
    """Casefolded, accents stripped, punctuation as spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def aliases(title: str) -> list[str]:
    """A title's names: itself, without a parenthetical qualifier, without a leading article."""
    out = [title]
    bare = re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()
    out.append(bare)
    out.append(re.sub(r"^(the|a|an)\s+", "", bare, flags=re.IGNORECASE))
    out.append(title.replace("_", " "))
    return [a for a in dict.fromkeys(out) if len(normalise(a)) >= 3]


def leaked(question: str, names: list[str]) -> list[str]:
    """The names (and aliases) that appear in `question`, verbatim or after normalising."""
    plain, norm = question.casefold(), f" {normalise(question)} "
    found = []
    for name in names:
        for alias in aliases(name):
            if alias.casefold() in plain or f" {normalise(alias)} " in norm:
                found.append(name)
                break
    return found


def concise(answer: str) -> bool:
    answer = answer.strip()
    return 0 < len(answer) <= MAX_ANSWER_CHARS and len(answer.split()) <= MAX_ANSWER_WORDS


def in_evidence(answer: str, text: str) -> bool:
    """The answer is stated in the page text (normalised, whole words)."""
    a, t = normalise(answer), f" {normalise(text)} "
    return bool(a) and f" {a} " in t
