"""How hard and how well-formed walked tasks are, measured with a corpus search (the bench and
the acceptance tests share it): does one clue alone find its entity first, does the whole
question find the answer's entity in the top 3, how many answers are numbers, how many
questions read wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.schema import Task
from stages.tasks.walk.checks import grammar_defects

NUMBER = re.compile(r"^\d[\d,.\s]*$")

#: search(query, k) -> the links of the first k hits
Search = Callable[[str, int], list[str]]


@dataclass
class Audit:
    tasks: int = 0
    clue_finds_entity: int = 0
    question_finds_answer: int = 0
    numeric_answers: int = 0
    grammar_defects: int = 0
    examples: dict[str, str] = field(default_factory=dict)

    def share(self, key: str) -> float:
        return getattr(self, key) / max(self.tasks, 1)


def audit(tasks: list[Task], search: Search) -> Audit:
    """Each figure counts tasks (a task with two telling clues counts once)."""
    out = Audit(tasks=len(tasks))
    for task in tasks:
        meta = json.loads(task.meta)
        urls, clues = meta["evidence_urls"], meta["properties"]
        for i, clue in enumerate(clues):  # hop i describes chain[i]
            if clue.strip() and search(clue, 1)[:1] == [urls[i]]:
                out.clue_finds_entity += 1
                out.examples.setdefault("clue finds its entity", f"{clue!r} -> {urls[i]}")
                break
        if urls[0] in search(task.question, 3):
            out.question_finds_answer += 1
            out.examples.setdefault("question finds the answer's entity", task.question)
        out.numeric_answers += bool(NUMBER.match(task.gold_answer.strip()))
        defects = grammar_defects(task.question)
        if defects:
            out.grammar_defects += 1
            out.examples.setdefault("grammar", f"{defects}: {task.question}")
    return out
