"""What every benchmark loader yields: an `EvalItem` (or a `BadRow` saying why a row is unusable).

Loaders read a format as it is published and never need the network for a local file. A broken
row becomes a `BadRow` with its reason, never an exception that ends the run.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

#: How options are shown and what is asked (VLMEvalKit's multiple-choice prompt, plus one line
#: that says how to answer, since the model answers inside <answer>).
ANSWER_WITH_LETTER = "Answer with the option's letter from the given choices."


@dataclass
class EvalItem:
    """One benchmark question, ready to become a task."""

    item_id: str  # the benchmark's own id (index, sample_id, data_id, line number)
    benchmark: str
    question: str  # as shown to the model (options and hint included)
    images: list[bytes | Path] = field(default_factory=list)
    answer: str | None = None
    aliases: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)  # letter -> text (multiple choice)
    split: str = ""  # the benchmark's category, level or split
    mode: str = "deepresearch"
    category: str = "other"  # a trajforge task category (the world's tasks keep theirs)


@dataclass
class BadRow:
    """A row that cannot be evaluated; `reason` says which and why."""

    item_id: str
    reason: str


def option_letters(row: dict) -> dict[str, str]:
    """Options A..Z that a row fills (empty and NaN cells are not options)."""
    options = {}
    for letter in string.ascii_uppercase:
        value = row.get(letter)
        if value is None or (isinstance(value, float) and value != value):
            continue
        text = str(value).strip()
        if text and text.lower() != "nan":
            options[letter] = text
    return options


def mcq_prompt(question: str, options: dict[str, str], hint: str | None = None) -> str:
    """The question with its options shown, as VLMEvalKit's multiple-choice prompt lays it out."""
    parts = []
    if hint:
        parts.append(f"Hint: {hint}")
    parts.append(f"Question: {question}")
    if options:
        parts.append("Options:\n" + "\n".join(f"{k}. {v}" for k, v in options.items()))
        parts.append(ANSWER_WITH_LETTER)
    return "\n".join(parts)
