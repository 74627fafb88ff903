"""Values blurred before they become clues, as BrowseComp's question writers do: "the late 1950s"
rather than 1957, "between 5,000 and 10,000" rather than 6218. An exact value is a key a
search engine matches verbatim (every population in the world is distinct); a blurred one
narrows the field without naming the entry."""

from __future__ import annotations

BUCKETS = (1, 2, 5)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def blur_year(year: int) -> str:
    """1957 -> "the late 1950s"; 1014 -> "the early 11th century" (before 1500, decades are too fine)."""
    if year >= 1500:
        part = year % 10
        third = "early" if part <= 3 else "mid" if part <= 6 else "late"
        return f"the {third} {year // 10 * 10}s"
    part = year % 100
    third = "early" if part <= 33 else "mid" if part <= 66 else "late"
    return f"the {third} {ordinal(year // 100 + 1)} century"


def blur_count(value: int) -> str:
    """6218 -> "between 5,000 and 10,000" (the 1-2-5 bucket holding the value)."""
    if value < 10:
        return "fewer than 10"
    scale = 1
    while scale * 10 <= value:
        scale *= 10
    bounds = [b * scale for b in BUCKETS] + [10 * scale]
    low = max(b for b in bounds if b <= value)
    high = min(b for b in bounds if b > value)
    return f"between {low:,} and {high:,}"


def blur(kind: str, value: str) -> str:
    """A blurred value: `kind` "year" or "count" (anything not a number is returned as is)."""
    digits = value.replace(",", "").strip()
    if not digits.isdigit():
        return value
    return blur_year(int(digits)) if kind == "year" else blur_count(int(digits))
