"""The one answer scorer: letters in every shape, numbers, aliases (pipeline.answers)."""

from __future__ import annotations

import pytest

from filters.answer_check import answers_match as filter_match
from pipeline.answers import answers_match, choice_letter, score
from world.oracle_judges import answer_matches as world_match

OPTIONS = {"A": "red", "B": "the blue car", "C": "green", "D": "yellow"}


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("[B]", "B"),
        ("**B**", "B"),
        ("B. the blue car", "B"),
        ("B) blue car", "B"),
        ("(B) the blue car", "B"),
        ("Option B", "B"),
        ("option (B)", "B"),
        ("The answer is B", "B"),
        ("The answer is (B).", "B"),
        ("Answer: B", "B"),
        ("the blue car", "B"),
        ("Blue car", "B"),
        ("It is the blue car, clearly.", "B"),
        ("\\boxed{C}", "C"),
        ("A cat", None),  # an article, not option A
        ("red or green", None),  # two options named: no pick
        ("E", None),  # not an option
        ("I cannot tell", None),
        ("", None),
    ],
)
def test_choice_letter_shapes(reply: str, letter: str | None) -> None:
    assert choice_letter(reply, OPTIONS) == letter


def test_score_with_options_compares_letters_and_gold_text() -> None:
    assert score("The answer is C", "C", options=OPTIONS)
    assert not score("The answer is C", "B", options=OPTIONS)
    assert score("green", "green", options=OPTIONS)  # gold given as the option's text
    assert not score(None, "B", options=OPTIONS)


@pytest.mark.parametrize(
    "pred, gold, aliases, expected",
    [
        ("3.1416", "3.14", [], True),  # a measurement within 1%
        ("3.3", "3.14", [], False),
        ("1901", "1900", [], False),  # whole numbers match exactly
        ("1,900", "1900", [], True),
        ("seven", "7", [], True),
        ("NYC", "New York City", ["NYC"], True),
        ("The Louvre", "Louvre", [], True),
        ("Paris, France", "Paris", [], True),  # the gold carried by a longer reply
        ("Lyon, not Paris", "Paris", [], False),  # named only to be rejected
    ],
)
def test_open_answers(pred: str, gold: str, aliases: list[str], expected: bool) -> None:
    assert score(pred, gold, aliases) is expected
    assert filter_match(pred, gold, aliases) is expected  # the filter uses the same rules


def test_world_judge_shares_the_rules_and_reads_prose() -> None:
    assert world_match("It is Paris, France", "Paris", [])
    assert answers_match("It is Paris, France", "Paris")
    assert not world_match("It is Lyon, not Paris", "Paris", [])
    assert not world_match("Lyon", "Paris", ["Paname"])
