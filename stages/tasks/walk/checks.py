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


# --------------------------------------------------------------------- shortcut and grammar checks

_NUMBER_RE = re.compile(r"\d[\d,]*(?:\.\d+)?")
# numbers a blurred clue may keep: decades ("the 1950s"), centuries ("11th century"), ranges
# ("between 5,000 and 10,000", "5,000-10,000"), bounds ("more than 200")
_BLURRED_RE = re.compile(
    r"\b\d{3,4}s\b|\b\d+(?:st|nd|rd|th)\b"
    r"|\bbetween\s+[\d,.]+\s+and\s+[\d,.]+|\b[\d,.]+\s*(?:-|–|to)\s*[\d,.]+"
    r"|\b(?:more|fewer|less)\s+than\s+[\d,.]+|\b(?:over|under|above|below|nearly|almost)\s+[\d,.]+",
    re.IGNORECASE,
)
MAX_PLAIN_NUMBER = 12  # "two albums", "3 piers": small counts identify nothing alone


def exact_values(clue: str) -> list[str]:
    """Numbers a clue states exactly (a year, a population) rather than blurred: a key a search
    engine matches verbatim (every population in an encyclopedia is distinct)."""
    rest = _BLURRED_RE.sub(" ", clue)
    found = []
    for token in _NUMBER_RE.findall(rest):
        digits = token.replace(",", "").split(".")[0]
        value = int(digits) if digits.isdigit() else 0
        round_number = len(digits) >= 2 and digits.rstrip("0") == digits[:1]
        if value > MAX_PLAIN_NUMBER and not round_number:
            found.append(token)
    return found


def grammar_defects(question: str) -> list[str]:
    """What reads wrong in a question: doubled commas, a comma before "?", four or more "whose"
    clauses stacked in one sentence (a clue then attaches to the wrong noun)."""
    found = []
    if re.search(r",\s*,", question):
        found.append("doubled comma")
    if re.search(r",\s*\?", question):
        found.append("comma before ?")
    if any(
        len(re.findall(r"\bwhose\b", s, re.IGNORECASE)) >= 4 for s in re.split(r"(?<=[.?!])\s+", question)
    ):
        found.append("4+ stacked whose")
    return found
