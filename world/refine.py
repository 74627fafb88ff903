"""Searching in vain, then refining: how the oracle's rollouts of a walked task go off the gold path.

A real agent rarely finds each entry of a multi-hop chain with its first query: it tries the
clue alone ("a harbour town with a population of between 200,000 and 500,000"), finds that too
broad, and narrows the search with the entry it already knows and the relation between them (the
gold query). The oracle does the same on a share `Knobs.refine` of a walked task's text_search
steps, drawn per (rollout salt, question, step) like its other draws, so a rerun repeats it.
The broad query is really run: when its results happen to show the entry, the step is done
without a refinement, exactly as the oracle accepts any observation that shows what a step is for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.schema import Task
from world.knobs import drawn

#: refined searches per trajectory at most: a six-hop walk with two of them still fits the
#: executor's turn budget (synth.max_turns 12: picture, 6 hops, 2 refinements, page, answer)
MAX_REFINES = 2
SEARCH = "text_search"


@dataclass(frozen=True)
class Refinement:
    """A gold search step that starts too broad: the broad query, and what narrows it."""

    broad: str  # the hop's clue alone
    known: str  # the entry the refined query adds (found in an earlier step)
    relation: str


def refinements(task: Task, path: list[dict[str, Any]], rate: float, salt: str) -> dict[int, Refinement]:
    """Gold step index -> its refinement, for the walked task's drawn search steps."""
    if rate <= 0:
        return {}
    try:
        meta = json.loads(task.meta or "{}")
    except ValueError:
        return {}
    hops = {
        str(h.get("query")): h
        for h in meta.get("hop_steps") or []
        if isinstance(h, dict) and h.get("tool") == SEARCH and h.get("query")
    }
    out: dict[int, Refinement] = {}
    for index, step in enumerate(path):
        queries = (step.get("arguments") or {}).get("queries") or []
        hop = hops.get(str(queries[0])) if step.get("tool_name") == SEARCH and queries else None
        broad = " ".join(str((hop or {}).get("property", "")).split())
        if hop is None or not broad or broad == queries[0]:
            continue
        if drawn(rate, "refine", salt, task.question, index):
            out[index] = Refinement(broad, str(hop.get("next_title", "")), str(hop.get("relation", "")))
        if len(out) == MAX_REFINES:
            break
    return out


def broad_think(refinement: Refinement) -> str:
    """The thought before the broad query: a plan, no claim about any result."""
    return (
        f"I will start broadly and search for the clue alone, {refinement.broad}; "
        "if that is too broad, I will narrow it down."
    )


def refined_think(refinement: Refinement, gold_think: str) -> str:
    """The thought after the broad query came back without the entry (a setback, said as one)."""
    return (
        "The broad search did not find it: none of those results is the entry I am after, the clue "
        f"alone fits too many entries. I will narrow the query with {refinement.known} and the "
        f"relation ({refinement.relation}). " + gold_think
    )
