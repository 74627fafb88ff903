"""Real answers are sentences and golds are short: the one scorer (`pipeline.answers`), the
last-thought check and the grounding check read them as a person would, and still refuse an
answer that names the gold only to reject it, hedges, or a quotation nobody read."""

from __future__ import annotations

import json

import pytest

from filters.answer_check import AnswerCheck
from filters.base import CheckContext
from filters.final_answer import FinalAnswerCheck, stated_answer
from filters.grounding import GroundingCheck
from filters.quotations import quotations, read_claims
from pipeline.answers import answers_match, score
from pipeline.schema import Step, Trajectory


@pytest.mark.parametrize(
    ("reply", "gold", "expected"),
    [
        # the short answer carried by a sentence
        (
            "Yes, the Girl Scouts of Southeastern Michigan explicitly state on their website that ...",
            "Yes",
            True,
        ),
        ("**No.** The troop does not offer it.", "No", True),
        ("No, the website says nothing of the kind.", "Yes", False),
        ("Action: Final Answer\nYes. The site lists it.", "yes", True),
        ("The program involves **18 senior University leaders** from four campuses.", "18", True),
        ("The notable race is the **Epsom Derby**, won by the horse Santa Claus.", "Derby", True),
        ("All 298 people on board died.", "two hundred and ninety eight", True),
        ("The baseline may be up to **4 inches (10 centimeters)** wide.", "Four inches", True),
        ("It measures 3.1416 metres across.", "3.14", True),
        ("The outlaw was **Jesse James**, killed in 1882.", "jesse woodson james", True),
        ("The device is the **jukebox**, a coin-operated phonograph.", "juke boxes", True),
        ("It is **Leviathan**, Hobbes's book of 1651.", "Leviathan by Thomas Hobbes", True),
        ("The soap is **The Archers**.", "The Archers - Radio Soap", True),
        ("The original play is **The Comedy of Errors**.", "The Comedie of Errors", True),
        ("The original play is **The Tragedy of Errors**.", "The Comedie of Errors", False),
        ("He was born in the **1930s**.", "1930-1939", True),
        # named only to be rejected, or one of several candidates
        ("It is not 18 but 20.", "18", False),
        ("It is 20, not 18.", "18", False),
        ("No, not Paris: the capital moved to Lyon.", "Paris", False),
        ("The answer is Lyon rather than Paris.", "Paris", False),
        ("It is either Paris or Lyon; the sources disagree.", "Paris", False),
        ("Paris or Lyon, I cannot tell which.", "Paris", False),
        ("It is Lyon, or Paris.", "Paris", False),
        (
            "The Spira Mirabilis, or logarithmic spiral, shapes the nautilus shell.",
            "logarithmic spiral",
            True,
        ),
        # the first sentence's bolded answer is the reply's answer; a later aside is not
        (
            "The original name was **Parva**. Before that the band was briefly called Runston Parva.",
            "Runston Parva",
            False,
        ),
        (
            "The composer is **Mozart**. He lived 1756–1791.",
            "1756 1791",
            True,
        ),  # another part of the question
        # words, numbers and units must really be the gold's
        ("Parisian cafes line the street.", "Paris", False),
        ("The race was won in 2018.", "18", False),
        ("The lines may be up to 4 cm wide.", "4 inches", False),
        ("The driver is Tim Douglas.", "Jim Douglas", False),
        ("James led the gang.", "Jesse Woodson James", False),
    ],
)
def test_long_form_replies(reply: str, gold: str, expected: bool) -> None:
    assert answers_match(reply, gold) is expected
    assert score(reply, gold) is expected  # eval shares the scorer


def test_descriptive_gold_is_matched_by_the_words_the_question_does_not_use() -> None:
    question = "What is the typical weather associated with this UK city of White Cliffs?"
    reply = "The city is **Dover**; it has a mild maritime climate."
    assert answers_match(reply, "The weather in Dover", question=question)
    assert not answers_match("The city is **Folkestone**.", "The weather in Dover", question=question)
    # a number is never an echo of the question
    question = "Who founded the company whose logo appears in scene 4?"
    assert not answers_match("It was founded by Person 5.", "Person 4", question=question)
    assert answers_match("It was founded by **Person 4**.", "Person 4", question=question)
    question = "Which country declared independence on 16 February 1918, the first Soviet republic to do so?"
    assert answers_match(
        "The country is **Lithuania**.", "Republic of Lithuania (1918–1940)", question=question
    )
    assert not answers_match(
        "The country is **Latvia**.", "Republic of Lithuania (1918–1940)", question=question
    )


def _answered(reply: str, gold: str, thought: str = "I have checked it.") -> Trajectory:
    steps = [Step(index=0, think=thought, action="answer", answer=reply)]
    return Trajectory(
        task_id="t-long",
        question="Does the viewer show it?",
        gold_answer=gold,
        steps=steps,
        final_answer=reply,
    )


def test_answer_check_keeps_a_sentence_that_carries_the_gold_and_drops_a_rejection() -> None:
    ctx = CheckContext()
    kept = AnswerCheck().run(
        _answered("Yes, the 3D Solar System Viewer on TheSkyLive provides it.", "Yes"), ctx
    )
    dropped = AnswerCheck().run(_answered("No, not at all.", "Yes"), ctx)
    assert kept.keep and not dropped.keep


@pytest.mark.parametrize(
    ("answer", "thought", "keep"),
    [
        (
            "Yes, the 3D Solar System Viewer on TheSkyLive provides a view of it.",
            "So the answer is yes, with details on how to do it.",
            True,
        ),
        ("No, the viewer has no such mode.", "So the answer is yes, with details on how to do it.", False),
        ("Jesse Woodson James was the outlaw born in 1847.", "So the answer is Jesse James.", True),
        (
            "All 298 people died: **Casualties**: 298 deaths.",
            "Therefore, the answer should be 298 casualties.",
            True,
        ),
        ("The capital is **Lyon**.", "So the answer is Paris.", False),
        ("The Archers.", "After verifying through multiple sources, the answer is clear.", True),
    ],
)
def test_last_thought_reads_long_answers(answer: str, thought: str, keep: bool) -> None:
    verdict = FinalAnswerCheck().run(_answered(answer, "x", thought), CheckContext())
    assert verdict.keep is keep, verdict.reason


def test_a_verdict_on_the_answer_is_not_a_stated_answer() -> None:
    assert stated_answer("All sources agree. The answer is solid. Time to answer.") is None
    assert stated_answer("The answer is consistent across reliable sources.") is None
    stated = stated_answer(
        'Therefore, the answer should be: The musical is "The Boys from Syracuse" by Rodgers.'
    )
    assert stated is not None and "The Boys from Syracuse" in stated  # the quote marks no longer cut it


# ------------------------------------------------------------------------------ quotations


def test_quotations_pair_matched_marks_and_skip_apostrophes() -> None:
    text = (
        "I opened the page's infobox titled ‘Apollo’s legacy’ and found a direct link to a page titled "
        "\"Moon landing\" beside 'Saturn V'; the editors' note is long."
    )
    assert [q for _, q in quotations(text)] == ["Apollo’s legacy", "Moon landing", "Saturn V"]
    # the gap between two quotations is not one
    assert [q for _, q in quotations('a page named " Alpha" and found a page titled "Beta"')] == ["Beta"]


def test_guesses_and_queries_are_not_claims_of_reading() -> None:
    thought = (
        'From what I remember, their home is in a fictional town called "Wetherwicke" or maybe "Buxton"? '
        'Maybe the organization is called "Misión Argentina contra el Hambre". '
        'Let me search for the page titled "Oxfam Argentina". '
        'The second result says: "September 2, 1752 was followed by September 14, 1752 (drop of 11 days)".'
    )
    assert read_claims(thought) == ["September 2, 1752 was followed by September 14, 1752 (drop of 11 days)"]


def _grounded(thought: str, observation: str) -> Trajectory:
    steps = [
        Step(
            index=0,
            think="Search.",
            action="tool_call",
            tool_name="text_search",
            arguments=json.dumps({"queries": ["calendar 1752"]}),
            observation_text=observation,
        ),
        Step(index=1, think=thought, action="answer", answer="3 to 13 September"),
    ]
    return Trajectory(task_id="t-q", question="Which days?", steps=steps, final_answer="3 to 13 September")


OBSERVATION = (
    "2. [1752 Calendar Change](https://libguides.example.org/calendar)\n\n"
    "September 2, 1752 was followed by September 14, 1752 (drop of 11 days to conform to the Gregorian calendar)\n"
    "3. The livre was the currency of the Kingdom of France from 781 to 1794."
)


@pytest.mark.parametrize(
    ("thought", "keep"),
    [
        ('The result says: "September 2, 1752 was followed by September 14, 1752 (drop of 11 days)".', True),
        (
            "The snippet reads “The livre... was the currency of the Kingdom of France... from 781 to 1794”.",
            True,
        ),
        ('Maybe the act is called "Calendar Act of Wetherwicke", I am not sure.', True),
        ('The page titled "The Calendar Riots of 1752" confirms it.', False),  # a title nothing showed
        ("The snippet reads ‘The livre was the currency of Spain’.", False),
    ],
)
def test_grounding_reads_quotations_as_quotations(thought: str, keep: bool) -> None:
    verdict = GroundingCheck().run(_grounded(thought, OBSERVATION), CheckContext())
    assert verdict.keep is keep, verdict.reason
