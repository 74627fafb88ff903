"""The world's built-in questions (issue 27, part 5): perception shaped like V* and HRBench (no
location hint, some multiple choice), search shaped like FVQA, many phrasings each; the gold
answer stays the plate's code or the page's fact, so gold paths and defect truth are unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

from world import load_tasks
from world.phrasings import PERCEPTION, PERCEPTION_CHOICE, SEARCH, perception_question, search_question

_LOCATION = re.compile(r"\b(?:upper|lower|middle|left|right|centre|center|area|corner)\b", re.IGNORECASE)
_OPTIONS = re.compile(r"\(([A-D])\) ([A-Z]{2}-\d{4})")


def test_perception_questions_name_the_object_never_where_it_is(small_world: Path) -> None:
    tasks = [t for t in load_tasks(small_world) if t.category == "perception"]
    assert tasks
    for task in tasks:
        meta = json.loads(task.meta)
        assert not _LOCATION.search(task.question), task.question
        colour = task.question.split(" plate")[0].split()[-1]
        assert colour.isalpha() and task.gold_answer not in task.question.replace(f") {task.gold_answer}", "")
        options = _OPTIONS.findall(task.question)
        if options:  # multiple choice: four distinct codes, the gold once, look-alikes of it
            codes = [code for _, code in options]
            assert [letter for letter, _ in options] == list("ABCD") and len(set(codes)) == 4
            assert codes.count(task.gold_answer) == 1
            assert all(c[:3] == task.gold_answer[:3] for c in codes)
        assert meta["phrasing"] < len(PERCEPTION) + len(PERCEPTION_CHOICE)


def test_every_phrasing_is_used_and_each_is_stable() -> None:
    perception = [perception_question("KX-4821", "teal", k % 3 == 0, f"perception-{k}") for k in range(300)]
    assert {i for _, i in perception} == set(range(len(PERCEPTION) + len(PERCEPTION_CHOICE)))
    choice = sum(i >= len(PERCEPTION) for _, i in perception) / len(perception)
    assert 0.2 <= choice <= 0.4, choice
    assert perception_question("KX-4821", "teal", False, "perception-7") == perception[7]
    search = [search_question("In what year was {x} founded?", "place", f"search-{k}") for k in range(200)]
    assert {i for _, i in search} == set(range(len(SEARCH)))
    assert len({q for q, _ in search}) == len(SEARCH)
    for question, _ in search:
        assert "founded?" in question and "place" in question and question[0].isupper()


def test_search_questions_ask_the_pages_fact_about_the_pictured_entry(small_world: Path) -> None:
    for task in (t for t in load_tasks(small_world) if t.category == "search"):
        path = json.loads(task.gold_path)
        assert "emblem" in task.question and task.gold_answer not in task.question
        assert [s["tool_name"] for s in path] == ["image_search", "web_visit", "answer"]
        assert path[1]["expect"]["text"] == task.gold_answer == path[-1]["arguments"]["answer"]
