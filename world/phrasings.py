"""Many phrasings of the world's built-in questions, shaped like the benchmarks they stand for.

Perception questions read like V* and HRBench: an attribute of a small object in a large image
(the code on a small plate), named by what it looks like and never by where it is, some as
multiple choice; the plate's colour is unique in its scene, so the question stays unambiguous.
Search questions read like FVQA: the picture identifies an entry, the question asks a fact about
it that only the encyclopedia holds. A phrasing is drawn from a hash of the task's id, not from
the build's random stream, so adding phrasings changes no scene, entity or other task.
"""

from __future__ import annotations

from world.knobs import unit

#: {colour}, {faint} (" faint" for a low-contrast plate, else "")
PERCEPTION = (
    "What code is printed on the small {colour} plate in this image?",
    "There is a tiny {colour} plate with{faint} lettering somewhere in this picture. What code does it show?",
    "Somewhere in this photo is a {colour} plate with{faint} lettering. What does the lettering say?",
    "What is written on the small {colour} plate in this image? Answer with the code exactly as printed.",
    "Read the code on the little {colour} plate in this picture. What is it?",
)
#: multiple choice, as V* and HRBench ask: {options} is "(A) .. (B) .. (C) .. (D) .."
PERCEPTION_CHOICE = (
    "What code is printed on the small {colour} plate in this image? {options} "
    "Answer with the code of the correct option.",
    "Which of these codes is on the{faint} {colour} plate in the picture? {options} Answer with the code itself.",
)
CHOICE_SHARE = 0.3  # of perception questions asked as multiple choice
#: {q} is an attribute question about {x}; {noun} is the entry's type
SEARCH = (
    ("This emblem belongs to an entry in the World Encyclopedia. {q}", "the {noun} it represents"),
    ("{q}", "the {noun} whose emblem is shown here"),
    ("Look at this emblem. {q}", "the {noun} it stands for"),
    ("The emblem in this image identifies an encyclopedia entry. {q}", "that {noun}"),
    ("{q}", "the {noun} this emblem belongs to"),
)


def pick(options: tuple, *key: object) -> object:
    """One of `options`, the same for the same key."""
    return options[int(len(options) * unit("phrasing", *key))]


def code_options(code: str, key: str) -> list[str]:
    """The gold code and three look-alikes (one digit changed each: read it exactly or miss),
    in a stable order."""
    prefix, digits = code[:3], code[3:]
    options, attempt = [code], 0
    while len(options) < 4:
        attempt += 1
        changed = list(digits)
        pos = int(len(changed) * unit("digit", key, attempt))
        if changed[pos].isdigit():
            changed[pos] = str((int(changed[pos]) + 1 + int(9 * unit("by", key, attempt))) % 10)
        other = prefix + "".join(changed)
        if other not in options:
            options.append(other)
    options.sort(key=lambda o: unit("option", key, o))
    return options


def perception_question(code: str, colour: str, faint: bool, key: str) -> tuple[str, int]:
    """(question, phrasing number) for the plate: no location hint, a share as multiple choice."""
    blank = " faint" if faint else ""
    if unit("choice", key) < CHOICE_SHARE:
        index = int(len(PERCEPTION_CHOICE) * unit("phrasing", key))
        labelled = " ".join(f"({'ABCD'[i]}) {o}" for i, o in enumerate(code_options(code, key)))
        text = PERCEPTION_CHOICE[index].format(colour=colour, faint=blank, options=labelled)
        return text, len(PERCEPTION) + index
    index = int(len(PERCEPTION) * unit("phrasing", key))
    return PERCEPTION[index].format(colour=colour, faint=blank), index


def search_question(template: str, noun: str, key: str) -> tuple[str, int]:
    """(question, phrasing number) for an attribute `template` about the pictured entry."""
    index = int(len(SEARCH) * unit("phrasing", key))
    frame, described = SEARCH[index]
    question = template.format(x=described.format(noun=noun))
    return frame.format(q=question[:1].upper() + question[1:]), index
