"""A walked chain and what a task records of it: the gold plan (planner format), the gold path
(the executor steps that solve it, each with what its observation must show) and `meta`.

The solver runs the chain backwards: it identifies the last entity (reverse image search of the
task's picture, or a search for its name in the text-only variant), then finds each earlier
entity from the one after it, by a search for the hop's clue or by reading the link on the
page, and reads the answer on the first page.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.plan_format import validate_plan
from stages.tools.registry import tool_table
from stages.tools.search.search_tools import ImageSearchTool, TextSearchTool
from stages.tools.visit.web_visit import WebVisitTool

SEARCH, IMAGE_SEARCH, VISIT = TextSearchTool.spec.name, ImageSearchTool.spec.name, WebVisitTool.spec.name


@dataclass
class Hop:
    """How entity `title` is found from the entity after it on the chain."""

    title: str
    url: str
    next_title: str
    next_url: str
    relation: str
    property: str
    question: str  # the question after this hop's rewrite
    tool: str = SEARCH  # text_search (query) or web_visit (the next page shows this URL)
    query: str = ""
    shows: str = ""  # web_visit: what the next page shows of this entity (its URL or its name)
    verified: bool = True  # the search was run over the corpus and found the page


@dataclass
class Chain:
    seed_title: str
    seed_url: str
    mined_question: str
    answer: str
    hops: list[Hop] = field(default_factory=list)
    final_title: str = ""
    final_url: str = ""
    image_url: str = ""
    visual_question: str = ""

    @property
    def titles(self) -> list[str]:
        return [self.seed_title, *(h.next_title for h in self.hops)]

    def meta(self, text_only: bool) -> dict[str, Any]:
        return {
            "walk": True,
            "text_only": text_only,
            "hops": len(self.hops),
            "chain": self.titles,
            "relations": [h.relation for h in self.hops],
            "properties": [h.property for h in self.hops],
            "evidence_urls": [self.seed_url, *(h.next_url for h in self.hops)],
            "rewrites": [self.mined_question, *(h.question for h in self.hops)]
            + ([] if text_only else [self.visual_question]),
            "hop_steps": [asdict(h) for h in self.hops],
            "image_url": None if text_only else self.image_url,
        }


def _step(think: str, tool: str, arguments: dict[str, Any], want: str | None) -> dict[str, Any]:
    expect = {"check": "contains", "text": want} if want else {}
    return {"think": think, "tool_name": tool, "arguments": arguments, "expect": expect}


def gold(chain: Chain, text_only: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(gold path, gold plan) for a chain; the plan is checked by `pipeline.plan_format`."""
    path: list[dict[str, Any]] = []
    plan: list[dict[str, Any]] = []
    if text_only:
        path.append(
            _step(f"The question names {chain.final_title}; I will search for it.", SEARCH,
                  {"queries": [chain.final_title]}, chain.final_url)
        )  # fmt: skip
        plan.append({"description": f"Search for {chain.final_title}", "tool_name": SEARCH,
                     "parameters": {"query": chain.final_title}})  # fmt: skip
    else:
        path.append(
            _step("I do not know what the picture shows; a reverse image search should identify it.",
                  IMAGE_SEARCH, {"image_paths": ["image_0.png"]}, chain.final_url)
        )  # fmt: skip
        plan.append({"description": "Reverse image search the picture to identify the entity",
                     "tool_name": IMAGE_SEARCH, "parameters": {"image_path": "image_0.png"}})  # fmt: skip
    found = f"the entity identified in Step {len(plan)}"
    for hop in reversed(chain.hops):
        if hop.tool == VISIT:
            path.append(
                _step(f"The page of {hop.next_title} names its {hop.relation}; I will read it to find that entry.",
                      VISIT, {"urls": [hop.next_url]}, hop.shows or hop.url)
            )  # fmt: skip
            plan.append({"description": f"Visit the page of {found} and find the linked {hop.relation}",
                         "tool_name": VISIT, "parameters": {"url": f"[URL of {found}]"}})  # fmt: skip
        else:
            path.append(
                _step(f"I now know {hop.next_title}; I will search for the entry described through it "
                      f"({hop.relation}, {hop.property}).".replace(", )", ")"),
                      SEARCH, {"queries": [hop.query]}, hop.url)
            )  # fmt: skip
            plan.append({"description": f"Search for the entry whose relation to {found} is: {hop.relation}",
                         "tool_name": SEARCH,
                         "parameters": {"query": f"[Name of {found}] {hop.relation} {hop.property}".strip()}})  # fmt: skip
        found = f"the entity found in Step {len(plan)}"
    path.append(
        _step(f"The search found the page of {chain.seed_title}; I will read it for the answer.",
              VISIT, {"urls": [chain.seed_url]}, chain.answer)
    )  # fmt: skip
    plan.append({"description": f"Visit the page of {found} and read the answer",
                 "tool_name": VISIT, "parameters": {"url": f"[URL of {found}]"}})  # fmt: skip
    path.append({"think": f"The page of {chain.seed_title} states it: {chain.answer}.", "tool_name": "answer",
                 "arguments": {"answer": chain.answer}, "expect": {}})  # fmt: skip
    plan.append(
        {"description": "Check the chain of entities and answer", "tool_name": "none", "parameters": {}}
    )
    _, errors = validate_plan(plan, tool_table())
    if errors:
        raise ValueError(f"walked chain made an invalid plan: {errors}")
    return path, plan


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
