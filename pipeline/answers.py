"""Answer scoring, in one place: the filter's answer check, the world's judge and eval share it.

- `normalize_answer`: casefolded NFKC text without markdown, articles and punctuation (a
  `\\boxed{...}` is unwrapped; `1,234` -> `1234`; `U.S.A.` -> `usa`, `3.14` stays).
- `answers_match`: normalised exact match against the gold answer or an alias; numbers within a
  relative tolerance when they have a fraction (measurements: 3.14 vs 3.1416), exactly when they
  are whole (years, counts, ids: 1% of 1900 is 19 years); a long-form reply also matches when it
  carries the gold (`pipeline.long_answers`: a leading yes/no, the gold's words inside it, a
  number with its unit, a shortened name), unless it names the gold only to reject it or hedges
  between it and another candidate. Real agents answer in sentences; golds are short.
- `choice_letter`: the option a multiple-choice reply picks, in every shape models write it:
  `B`, `(B)`, `B.`, `B) text`, `B. some text`, `Option B`, `The answer is B`, `Answer: (B)`,
  or the option's text itself (alone, or as the only option named in the reply).
- `score`: the one verdict eval uses (letters when the item has options, else text/numbers).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache

from pipeline.long_answers import carries

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_BOXED = re.compile(r"\\boxed\{(.*)\}")
_NUMBER = re.compile(r"^([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)\s*(%|[^\W\d_]+\.?)?$")
_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
)
_WORDS = {w: i for i, w in enumerate(_NUMBER_WORDS.split(" "))}

# a reply that is only a letter: "B", "(B)", "B.", "[B]", "**B**" (markdown is stripped first)
_LETTER_ONLY = re.compile(r"^[(\[]?([A-Za-z])[)\]]?[.:]?$")
# a reply that starts with a letter and a delimiter: "B. text", "B) text", "(B) text", "B: text"
_LETTER_LEAD = re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.):])(?:\s|$)")
# a letter named by a phrase: "Option B", "the answer is (B)", "Answer: B", "choice B"
_LETTER_PHRASE = re.compile(
    r"\b(?:answer|option|choice)\b(?:\s+(?:is|would be|should be))?\s*[:：]?\s*[(\[]?([A-Z])[)\]]?(?![\w'])",
    re.IGNORECASE,
)


@lru_cache(maxsize=65536)
def normalize_answer(text: str) -> str:
    """Casefolded, NFKC, without markdown, articles and punctuation; whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text or "").strip()
    boxed = _BOXED.search(text)
    if boxed:
        text = boxed.group(1)
    text = text.casefold().replace("*", "").replace("_", " ")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", "", text)  # U.S.A. -> usa, keeps 3.14
    text = re.sub(r"[^\w\s.%-]|(?<!\w)-(?!\d)|-(?!\w)", " ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def as_number(text: str) -> tuple[float, str] | None:
    """(value, unit) when a normalised answer is one number with an optional unit."""
    if text in _WORDS:
        return float(_WORDS[text]), ""
    match = _NUMBER.match(text)
    if not match:
        return None
    try:
        return float(match.group(1).replace(",", "")), (match.group(2) or "").rstrip(".")
    except ValueError:
        return None


def _whole(text: str) -> bool:
    """Whether a normalised numeric answer is written without a fraction."""
    return "." not in text


def _numbers_match(pred: str, want: str, tolerance: float) -> bool:
    p, g = as_number(pred), as_number(want)
    if p is None or g is None or (p[1] and g[1] and p[1] != g[1]):
        return False
    if _whole(pred) and _whole(want):  # a year, a count, an id: exact
        return p[0] == g[0]
    return abs(p[0] - g[0]) <= max(tolerance * abs(g[0]), 1e-9)


def answers_match(
    predicted: str | None,
    gold: str | None,
    aliases: Sequence[str] = (),
    tolerance: float = 0.01,
    *,
    question: str | None = None,
) -> bool:
    """Whether `predicted` names the gold answer (or an alias), numbers within `tolerance`.

    `question`, when given, lets a descriptive gold match by its informative words (those the
    question does not already use).
    """
    if predicted is None or gold is None:
        return False
    pred = normalize_answer(predicted)
    if not pred:
        return False
    for target in (gold, *aliases):
        want = normalize_answer(target)
        if not want:
            continue
        if pred == want or _numbers_match(pred, want, tolerance):
            return True
    return carries(predicted, [gold, *aliases], tolerance, question)


def choice_letter(predicted: str | None, options: Mapping[str, str]) -> str | None:
    """The option letter a reply picks (None: no option, or more than one, is named)."""
    if not predicted or not options:
        return None
    letters = {k.upper() for k in options}
    text = unicodedata.normalize("NFKC", predicted).replace("*", "").strip()
    boxed = _BOXED.search(text)
    if boxed:
        text = boxed.group(1).strip()
    by_text = {normalize_answer(v): k.upper() for k, v in options.items() if normalize_answer(str(v))}
    if (exact := by_text.get(normalize_answer(text))) is not None:
        return exact
    for pattern in (_LETTER_ONLY, _LETTER_LEAD):
        if (match := pattern.match(text)) is not None:
            letter = next(g for g in match.groups() if g).upper()
            if letter in letters:
                return letter
    named = {m.group(1).upper() for m in _LETTER_PHRASE.finditer(text)} & letters
    if len(named) == 1:
        return named.pop()
    said = normalize_answer(text)
    mentioned = {
        letter for norm, letter in by_text.items() if re.search(rf"(^| ){re.escape(norm)}( |$)", said)
    }
    return mentioned.pop() if len(mentioned) == 1 else None


def score(
    predicted: str | None,
    gold: str | None,
    aliases: Sequence[str] = (),
    options: Mapping[str, str] | None = None,
    tolerance: float = 0.01,
    question: str | None = None,
) -> bool:
    """Whether a prediction is right: the option picked when there are options, else the text."""
    if predicted is None or gold is None:
        return False
    if options:
        picked = choice_letter(predicted, options)
        wanted = gold.strip().upper() if gold.strip().upper() in {k.upper() for k in options} else None
        if wanted is None:  # the gold is an option's text, not its letter
            wanted = choice_letter(gold, options)
        return picked is not None and picked == wanted
    return answers_match(predicted, gold, aliases, tolerance, question=question)
