"""Reading the short answer a long-form reply carries (used by `pipeline.answers`, the one scorer).

Real agents answer in sentences ("Yes, the Girl Scouts of Southeastern Michigan state on their
website ...", "The race is the **Epsom Derby**, won by ...") while golds are short ("Yes",
"Derby"). A reply carries the gold when:
- the gold is yes/no and the reply leads with the same yes/no;
- a form of the gold (see `gold_forms`) appears in it as whole words: tokens are compared
  casefolded, without accents, lightly stemmed (plurals, -ing), with number words as digits, and
  across spacing ("juke boxes" is "jukebox"); a number must come with the gold's unit, if any;
- a person's name is shortened the usual way ("Jesse James" for "Jesse Woodson James": two or
  more of its words, in order, ending with the surname), or a title of three or more words has
  one word spelt otherwise ("The Comedie of Errors");
- every informative word of a descriptive gold is in the reply (`question` given: words the
  question already uses say nothing; "The weather in Dover" for a question about weather).

It does not carry the gold when the reply names it only to reject it ("not 18 but 20",
"No, not Paris", "rather than Paris") or hedges between it and another candidate ("Paris or
Lyon", "either 18 or 20"): any such mention vetoes the reply. Nor when its first sentence bolds
another answer and the gold only comes up later ("The original name was **Parva**. Before that
the band was briefly called Runston Parva ...").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

_TOKEN = re.compile(r"-?\d+(?:\.\d+)?(?:st|nd|rd|th|s)?|[^\W\d_]+(?:'[^\W\d_]+)*")
_SENTENCE_END = re.compile(r"(?<!\d)[.!?;:](?!\d)|\n")
# fmt: off
_NEGATORS = frozenset({
    "not", "no", "never", "neither", "nor", "isn't", "wasn't", "aren't", "weren't", "doesn't",
    "didn't", "cannot", "rather", "instead", "unlike", "except",
})
_HEDGES = frozenset({"or", "either"})
STOPWORDS = frozenset({
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "by", "from", "and", "with", "as", "is",
    "was", "it", "its", "his", "her", "their", "this", "that", "be", "which", "who", "what",
})
# fmt: on
_GENERIC = frozenset({"disambiguation"})
_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_YES_NO = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}
_LABEL = frozenset({"action", "final", "short", "answer"})  # "Action: Final Answer\nYes, ..."


@dataclass(frozen=True)
class Token:
    """One word of a text: its compared form, the sentence it belongs to, and whether a comma
    comes right before it (", or X," is an aside naming X, not a hedge)."""

    stem: str
    sentence: int
    after_comma: bool = False


def _plain(text: str) -> str:
    """NFKC, casefolded, accents and markdown emphasis dropped, typographic marks made plain."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text or "").casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("’", "'").replace("‘", "'").replace("−", "-").replace("*", " ").replace("_", " ")
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234


def stem(word: str) -> str:
    """A light stem: possessive, plural and -ing endings dropped; ordinals and decades kept apart."""
    if word[:1].isdigit() or word[:2].lstrip("-")[:1].isdigit():
        return re.sub(r"(?<=\d)(?:st|nd|rd|th)$", "", word)  # 3rd -> 3; 1930s stays a decade
    word = re.sub(r"'s$", "", word)
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and re.search(r"(?:x|ch|sh|ss)es$", word):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _numbers_as_digits(words: list[str]) -> list[str]:
    """Runs of number words as one number: "two hundred and ninety eight" -> "298"."""
    out: list[str] = []
    i = 0
    while i < len(words):
        j, total, current = i, 0, 0
        while j < len(words):
            w = words[j]
            if w in _UNITS:
                current += _UNITS[w]
            elif w in _SCALES and (current or total or j > i):
                scale = _SCALES[w]
                if scale == 100:
                    current = max(current, 1) * 100
                else:
                    total, current = total + max(current, 1) * scale, 0
            elif w == "and" and j > i and j + 1 < len(words) and words[j + 1] in _UNITS:
                pass
            else:
                break
            j += 1
        if j > i:
            out.append(str(total + current))
            i = j
        else:
            out.append(words[i])
            i += 1
    return out


@lru_cache(maxsize=16384)
def tokens(text: str) -> tuple[Token, ...]:
    """The words of a text, stemmed, each with its sentence number."""
    out: list[Token] = []
    for sentence, part in enumerate(_SENTENCE_END.split(_plain(text))):
        part = re.sub(r"(?<=\w)[-–—]|[-–—](?=[^\W\d])", " ", part)
        part = re.sub(r"\b(thousand|million|billion),", r"\1", part)  # one thousand, nine hundred
        for k, chunk in enumerate(part.split(",")):
            words = _numbers_as_digits(_TOKEN.findall(chunk))
            out += [Token(stem(w), sentence, after_comma=k > 0 and i == 0) for i, w in enumerate(words)]
    return tuple(out)


def stems(text: str) -> list[str]:
    return [t.stem for t in tokens(text)]


def gold_forms(gold: str) -> list[list[str]]:
    """The ways a gold can be written, as stemmed words without articles.

    Golds taken from titles carry extras: "Duck Soup (disambiguation)", "Troll (Internet",
    "The Archers - Radio Soap", "Leviathan by Thomas Hobbes", "Landy, John Michael",
    "ARGENTINA or URUGUAY", "1930-1939" (the 1930s).
    """
    text = unicodedata.normalize("NFKC", gold).strip()
    forms = [text]
    if (decade := re.fullmatch(r"(\d{3})0\s*[-–]\s*\1 ?9", text)) is not None:
        forms.append(f"{decade.group(1)}0s")
    bare = re.sub(r"\([^)]*\)?", " ", text)
    # "London (or Salomon) Symphonies": the word before the brackets, or the one inside them
    forms.append(re.sub(r"[^\s(]+\s*\(\s*or\s+([^)]*)\)", r"\1", text, flags=re.IGNORECASE))
    forms.append(bare)
    forms.append(re.split(r"\s[-–—]\s", bare)[0])
    forms.append(re.split(r"\s+by\s+", bare, flags=re.IGNORECASE)[0])
    forms += re.split(r"\s+or\s+|\s*/\s*|;", bare, flags=re.IGNORECASE)
    head, _, rest = bare.partition(",")
    forms.append(head)
    if rest.strip() and len(head.split()) == 1 and 1 <= len(rest.split()) <= 3:
        forms.append(f"{rest} {head}")  # "Landy, John Michael" -> "John Michael Landy"
    out: list[list[str]] = []
    for form in forms:
        words = [w for w in stems(form) if w not in _GENERIC and w not in {"a", "an", "the"}]
        if words and words[0] in {"in", "on", "at"} and len(words) > 1:  # "in Jailhouse Rock"
            words = words[1:]
        if words and words not in out:
            out.append(words)
    return out


def _spans(reply: Sequence[Token], form: Sequence[str]) -> Iterable[tuple[int, int]]:
    """(start, end) of each place the reply spells the form, spacing aside ("jukebox" = "juke box")."""
    target = "".join(form)
    for start in range(len(reply)):
        joined = ""
        for end in range(start, min(len(reply), start + len(form) + 2)):
            joined += reply[end].stem
            if joined == target:
                yield start, end + 1
                break
            if not target.startswith(joined):
                break


def _rejected(reply: Sequence[Token], start: int, end: int) -> bool:
    """Whether the mention at [start, end) is negated or one of several candidates."""
    sentence = reply[start].sentence
    before = [t.stem for t in reply[max(0, start - 3) : start] if t.sentence == sentence]
    after = [t.stem for t in reply[end : end + 1] if t.sentence == sentence]
    if _NEGATORS & set(before):
        return True
    # ", or X," is an aside that names X ("The Spira Mirabilis, or logarithmic spiral, ...")
    aside = (
        start >= 1
        and reply[start - 1].stem == "or"
        and reply[start - 1].after_comma
        and end < len(reply)
        and reply[end].after_comma
        and reply[end].sentence == sentence
    )
    return (not aside and before[-1:] == ["or"]) or bool(_HEDGES & set(after)) or "either" in before


def _number_unit(form: Sequence[str]) -> tuple[str, str] | None:
    if 1 <= len(form) <= 2 and re.fullmatch(r"-?\d+(?:\.\d+)?", form[0]):
        return form[0], (form[1] if len(form) == 2 else "")
    return None


def _numbers_agree(said: str, want: str, tolerance: float) -> bool:
    if "." not in said and "." not in want:
        return int(said) == int(want)
    return abs(float(said) - float(want)) <= max(tolerance * abs(float(want)), 1e-9)


def _mentions(reply: Sequence[Token], form: Sequence[str], tolerance: float) -> list[tuple[int, int]]:
    if (number := _number_unit(form)) is not None:
        value, unit = number
        found = []
        for i, tok in enumerate(reply):
            number = re.fullmatch(r"-?\d+(?:\.\d+)?", tok.stem)
            unit_ok = not unit or (i + 1 < len(reply) and reply[i + 1].stem == unit)
            if number and unit_ok and _numbers_agree(tok.stem, value, tolerance):
                found.append((i, i + (2 if unit else 1)))
        return found
    return list(_spans(reply, form))


def leading_polarity(reply: str) -> str | None:
    """ "yes"/"no" when the reply opens with one ("Yes, the ...", "**No.**", "Final answer: yes")."""
    words = stems(reply)[:6]
    while words and words[0] in _LABEL:
        words = words[1:]
    return _YES_NO.get(words[0]) if words else None


def _short_name(reply: Sequence[Token], form: Sequence[str]) -> list[tuple[int, int]]:
    """Two or more words of a name, in order, ending with its last word ("Jesse James")."""
    if not 3 <= len(form) <= 4 or not all(w.isalpha() and w not in STOPWORDS for w in form):
        return []
    found = []
    for end, tok in enumerate(reply):
        if tok.stem != form[-1]:
            continue
        start, k = end, len(form) - 1
        while start > 0 and reply[start - 1].sentence == tok.sentence and reply[start - 1].stem in form[:k]:
            k = len(form[:k]) - 1 - form[:k][::-1].index(reply[start - 1].stem)
            start -= 1
        if end > start:
            found.append((start, end + 1))
    return found


def carries(reply: str, golds: Sequence[str], tolerance: float = 0.01, question: str | None = None) -> bool:
    """Whether a long-form reply carries one of the golds (see the module docstring)."""
    said = tokens(reply)
    if not said:
        return False
    polar = [_YES_NO[w] for g in golds if len(w := stems(g)) == 1 and (w := w[0]) in _YES_NO]
    if polar:
        return leading_polarity(reply) in polar
    mentions: list[tuple[int, int]] = []
    for gold in golds:
        for form in gold_forms(gold):
            mentions += (
                _mentions(said, form, tolerance)
                or _short_name(said, form)
                or _title_spelt_otherwise(said, form)
            )
    if mentions:
        if _headline_differs(reply, said, golds, mentions):
            return False  # the reply's own bolded answer is a variant of the gold, not the gold
        return not any(_rejected(said, s, e) for s, e in mentions)
    return question is not None and _described(said, golds, set(stems(question)))


def _headline_differs(
    reply: str, said: Sequence[Token], golds: Sequence[str], mentions: Sequence[tuple[int, int]]
) -> bool:
    """Whether the first sentence bolds an answer that shares words with the gold but is not it,
    and the gold itself only comes up later ("The original name was **Parva**. Before that the
    band was briefly called Runston Parva ...")."""
    first = said[0].sentence
    if any(said[s].sentence == first for s, _ in mentions):
        return False
    gold_words = {w for g in golds for form in gold_forms(g) for w in form if w not in STOPWORDS}
    for bold in re.finditer(r"\*\*([^*\n]+)\*\*|__([^_\n]+)__", reply):
        if len(_SENTENCE_END.split(_plain(reply[: bold.start()]))) - 1 != first:
            break
        if gold_words & set(stems(bold.group(1) or bold.group(2))):
            return True
    return False


def _near(word: str, other: str, shortest: int = 8, prefix: int = 3) -> bool:
    """Words a slip of the pen (or an old spelling) apart: at most two edits, both words at least
    `shortest` letters, the first `prefix` letters alike ("Symphomes" for "Symphonies")."""
    if (
        min(len(word), len(other)) < shortest
        or abs(len(word) - len(other)) > 2
        or word[:prefix] != other[:prefix]
    ):
        return False
    row = list(range(len(other) + 1))
    for i, a in enumerate(word, 1):
        prev, row[0] = row[0], i
        for j, b in enumerate(other, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (a != b))
    return row[-1] <= 2


def _title_spelt_otherwise(reply: Sequence[Token], form: Sequence[str]) -> list[tuple[int, int]]:
    """A title of three or more words written with one word spelt otherwise ("The Comedie of
    Errors" for "The Comedy of Errors"): every other word exact, that one a near spelling."""
    if len(form) < 3 or not all(w.isalpha() for w in form):
        return []
    found = []
    for start in range(len(reply) - len(form) + 1):
        window = reply[start : start + len(form)]
        if len({t.sentence for t in window}) > 1:
            continue
        differ = [(t.stem, w) for t, w in zip(window, form, strict=True) if t.stem != w]
        if len(differ) == 1 and _near(*differ[0], shortest=5, prefix=4):
            found.append((start, start + len(form)))
    return found


def _described(said: Sequence[Token], golds: Sequence[str], asked: set[str]) -> bool:
    """A descriptive gold whose informative words (not already in the question) the reply uses.

    Every one of them for a gold of two; all but one for three or more, which describe rather
    than name ("English horse race Derby" for "the Epsom Derby, won by the horse ...").
    """
    for gold in golds:
        for form in gold_forms(gold):
            content = {w for w in form if w not in STOPWORDS}
            # a number is never an echo of the question ("Person 4" for "... in scene 4?")
            informative = {w for w in content if w not in asked or w[:1].isdigit()} or content
            if len(form) < 2 or not informative:
                continue
            places = {
                w: [i for i, t in enumerate(said) if t.stem == w or (w.isalpha() and _near(t.stem, w))]
                for w in informative
            }
            missing = sum(not p for p in places.values())
            if missing > (1 if len(informative) >= 3 else 0):
                continue
            return not any(_rejected(said, i, i + 1) for p in places.values() for i in p)
    return False
