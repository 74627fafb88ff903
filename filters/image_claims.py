"""What a thought claims to see in an image, and whether OCR text or pixel colours support it.

Claims are taken only from sentences that report a look ("shows", "reads", "the label ...") and
are neither plans ("I will search for 'X'") nor admissions ("too small to read"): quoted strings,
code-like tokens (HE-9535, A4B2) and numbers of two or more digits right after a reading word
("reads 1907"; sizes, turns, zoom factors, coordinates and file names removed first). Colour claims are a colour word before a thing that
has one ("the red sign", "a yellow plate").

Text matches after folding case, dropping spaces and punctuation, and mapping the letters OCR
confuses with digits (O/0, I/l/1, S/5, B/8, Z/2) onto the digits; a claim of six or more such
characters may differ from a stretch of the OCR text by one edit per six.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from filters.quotations import quotations

if TYPE_CHECKING:
    from PIL import Image

_LOOK = re.compile(
    r"\b(?:shows?|showing|shown|reads?|reading|says?|saying|print(?:s|ed)?|written|displays?|displayed|"
    r"visible|legible|labell?ed|labels?|text|lettering|inscription|caption|sign|plate|code|number|spells?|"
    r"states?|contains?|depicts?|there (?:is|are)|i (?:can )?see)\b",
    re.IGNORECASE,
)
_INTENT = re.compile(
    r"\b(?:will|let me|let's|need to|going to|want to|look(?:ing)? for|search(?:ing)? for|find|try(?:ing)? to|"
    r"whether|if|should|might|may|could|would|question|asks?|expect(?:ed)?|hope)\b",
    re.IGNORECASE,
)
_CANNOT_READ = re.compile(
    r"\b(?:can(?:'t|not| not)|could(?:n't| not)|unable to|hard to|impossible to)\s+(?:\w+\s+){0,2}"
    r"(?:read|see|make out|tell|decipher)|\b(?:unreadable|illegible|not (?:legible|readable|clear)|blurr?y|"
    r"too (?:small|faint|blurry|dark|low))\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_NOISE = re.compile(
    r"https?://\S+|\S+\.(?:png|jpe?g|gif|webp|bmp|tiff?)\b|\(\s*-?\d[\d.\s,-]*\)|\[\s*-?\d[\d.\s,-]*\]|"
    r"\b\d+(?:\.\d+)?\s*(?:x|×|%|°|degrees?|deg|px|pixels?|times|percent|pt|fold)(?![a-z])|"
    r"\b\d+\s*[x×]\s*\d+\b|\b(?:step|image|turn|attempt|crop|box|region|area|line)\s*#?\s*\d+\b",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)+(?![\w-])"
    r"|(?<![\w-])(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{3,}(?![\w-])"
)
_NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.,])\d{2,}(?:\.\d+)?(?![\w])")
# a number is a reading claim only right after a reading word or a colon ("reads 1907", "the
# number is 4521", "code: 7731"), not a count ("there are 12 cars") or a measure
_READ_BEFORE = re.compile(
    r"(?:\b(?:reads?|reading|says?|saying|printed|written|labell?ed|numbered|displays?|spells?|code|"
    r"number|text|digits|figure|value)\W+(?:\w+\W+){0,2}|:\s*)$",
    re.IGNORECASE,
)

#: colour word -> hue buckets (see `colour_shares`) that count as showing it
COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("red", "pink"),
    "crimson": ("red", "pink"),
    "orange": ("orange", "red", "yellow", "brown"),
    "yellow": ("yellow", "orange"),
    "gold": ("yellow", "orange", "brown"),
    "golden": ("yellow", "orange", "brown"),
    "lime": ("green", "yellow"),
    "green": ("green", "cyan"),
    "teal": ("cyan", "green", "blue"),
    "cyan": ("cyan", "blue", "green"),
    "turquoise": ("cyan", "green", "blue"),
    "blue": ("blue", "cyan", "purple"),
    "navy": ("blue", "purple", "black"),
    "purple": ("purple", "blue", "pink"),
    "violet": ("purple", "blue", "pink"),
    "lavender": ("purple", "blue", "pink", "grey", "white"),
    "magenta": ("pink", "purple", "red"),
    "pink": ("pink", "red", "purple"),
    "brown": ("brown", "orange", "red"),
    "black": ("black",),
    "white": ("white", "grey"),
    "grey": ("grey", "white", "black"),
    "gray": ("grey", "white", "black"),
    "silver": ("grey", "white"),
}
_THINGS = (
    r"sign|signs|plate|plates|label|labels|board|banner|frame|box|tag|sticker|badge|logo|emblem|poster|"
    r"card|text|lettering|letters|writing|font|car|bus|truck|van|bike|door|shirt|jacket|flag|arrow|"
    r"light|background|circle|square|rectangle|button|plaque|marker|stamp|panel|screen|sticker"
)
_COLOUR_CLAIM = re.compile(rf"\b(?P<colour>{'|'.join(COLOURS)})(?:[- ]\w+)?\s+(?:{_THINGS})\b", re.IGNORECASE)
_FOLD = str.maketrans("oilszb|", "0115281")


@dataclass(frozen=True)
class Claims:
    """What one thought says it sees: texts (as written) and colour words."""

    texts: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.texts or self.colours)


@lru_cache(maxsize=8192)
def claims_in(thought: str) -> Claims:
    """The text and colour claims of a thought (empty for plans, admissions and other prose)."""
    texts: list[str] = []
    colours: list[str] = []
    for sentence in _SENTENCE.split(thought):
        if not _LOOK.search(sentence) or _INTENT.search(sentence) or _CANNOT_READ.search(sentence):
            continue
        colours += [m.group("colour").lower() for m in _COLOUR_CLAIM.finditer(sentence)]
        rest = sentence
        for start, quoted in quotations(sentence, min_chars=2, max_chars=80):
            quote = quoted.strip(" .,:;")
            if len(fold(quote)) >= 2:
                texts.append(quote)
            rest = rest.replace(sentence[start : start + len(quoted) + 2], " ")
        rest = _NOISE.sub(" ", rest)
        texts += _CODE.findall(rest)
        rest = _CODE.sub(" ", rest)
        texts += [m.group(0) for m in _NUMBER.finditer(rest) if _READ_BEFORE.search(rest[: m.start()])]
    return Claims(tuple(dict.fromkeys(texts)), tuple(dict.fromkeys(colours)))


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Case, spacing, punctuation and OCR's letter/digit confusions folded away."""
    return re.sub(r"[^0-9a-z]", "", text.casefold().translate(_FOLD))


def _edits_within(needle: str, haystack: str) -> int:
    """Fewest edits turning `needle` into some stretch of `haystack` (Sellers' algorithm)."""
    previous = [0] * (len(haystack) + 1)
    for i, char in enumerate(needle, 1):
        current = [i] + [0] * len(haystack)
        for j, other in enumerate(haystack, 1):
            current[j] = min(previous[j - 1] + (char != other), previous[j] + 1, current[j - 1] + 1)
        previous = current
    return min(previous)


def supported(claim: str, text: str) -> bool:
    """Whether OCR `text` bears out `claim` (whole, or each word of a longer quote)."""
    needle, haystack = fold(claim), fold(text)
    if not needle:
        return True
    if needle in haystack:
        return True
    budget = len(needle) // 6
    if budget and _edits_within(needle, haystack) <= budget:
        return True
    words = [fold(w) for w in claim.split()]
    words = [w for w in words if len(w) >= 2]
    return len(words) > 1 and all(supported(w, text) for w in words)


def colour_shares(image: Image.Image) -> dict[str, float]:
    """Share of a 64-px thumbnail's pixels in each hue bucket (achromatic ones apart)."""
    thumb = image.convert("RGB")
    thumb.thumbnail((64, 64))
    hsv = np.asarray(thumb.convert("HSV"), dtype=np.float32).reshape(-1, 3)
    if not len(hsv):
        return {}
    hue, sat, val = hsv[:, 0] * (360 / 256), hsv[:, 1] / 255, hsv[:, 2] / 255
    chroma = (sat >= 0.2) & (val >= 0.25)
    light = val >= 0.6
    buckets = {
        "red": chroma & ((hue < 15) | (hue >= 345)),
        "orange": chroma & (hue >= 15) & (hue < 45),
        "yellow": chroma & (hue >= 40) & (hue < 70),
        "green": chroma & (hue >= 65) & (hue < 170),
        "cyan": chroma & (hue >= 165) & (hue < 200),
        "blue": chroma & (hue >= 195) & (hue < 260),
        "purple": chroma & (hue >= 250) & (hue < 295),
        "pink": chroma & (((hue >= 290) & (hue < 345)) | (light & ((hue < 20) | (hue >= 330)))),
        "brown": chroma & (hue < 50) & (val < 0.65),
        "white": (sat < 0.2) & (val >= 0.75),
        "grey": (sat < 0.2) & (val >= 0.2) & (val < 0.85),
        "black": val < 0.2,
    }
    return {name: float(mask.mean()) for name, mask in buckets.items()}


def shows_colour(shares: dict[str, float], colour: str, min_share: float) -> bool:
    """Whether any bucket that counts as `colour` covers at least `min_share` of the image."""
    return sum(shares.get(b, 0.0) for b in COLOURS.get(colour, ())) >= min_share or colour not in COLOURS
