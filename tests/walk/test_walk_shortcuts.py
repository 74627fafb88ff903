"""Shortcut resistance, checked by the walk on any corpus: a hop whose clue states an exact value
or, searched alone, finds its own entity first is rejected and counted by reason; values are
blurred before they become clues; questions are checked for grammar before acceptance."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pipeline.config import TeacherConfig
from pipeline.teacher import TeacherClient
from stages.readers.corpus import open_corpus
from stages.tasks.walk.checks import exact_values, grammar_defects
from stages.tasks.walk.run import Walker, WalkSettings, run_walks
from stages.tasks.walk.teacher import WalkTeacher
from stages.tools.search.corpus_web import index_corpus, origin_for
from tests.fake_openai import FakeTeacher
from world.blur import blur_count, blur_year


@pytest.mark.parametrize(
    ("clue", "exact"),
    [
        ("a botanist born in 1813", ["1813"]),
        ("a foundry with 6218 employees", ["6218"]),
        ("a town with a population of 6,218", ["6,218"]),
        ("a botanist born in the late 1810s", []),
        ("a market town founded in the early 11th century", []),
        ("a foundry with between 5,000 and 10,000 employees", []),
        ("a beetle 20-50 mm long", []),
        ("a harbour with 12 piers", []),
        ("a company with more than 5000 staff", []),
    ],
)
def test_exact_values_are_found_blurred_ones_pass(clue: str, exact: list[str]) -> None:
    assert exact_values(clue) == exact


def test_values_are_blurred_to_decades_centuries_and_ranges() -> None:
    assert blur_year(1957) == "the late 1950s" and blur_year(1953) == "the early 1950s"
    assert blur_year(1014) == "the early 11th century" and blur_year(971) == "the late 10th century"
    assert blur_count(6218) == "between 5,000 and 10,000" and blur_count(180) == "between 100 and 200"
    assert all(exact_values(f"with {blur_count(v)} employees") == [] for v in (11, 99, 6218, 734_112))


def test_grammar_defects_are_named() -> None:
    assert grammar_defects(
        "Who founded the place shown in this picture, a river town founded in 908,, a town?"
    ) == ["doubled comma"]
    assert grammar_defects("How many people does it employ, ?") == ["comma before ?"]
    stacked = "the a whose b is the c whose d is the e whose f is the g whose h is x"
    assert grammar_defects(f"In what year was {stacked} founded?") == ["4+ stacked whose"]
    assert (
        grammar_defects("A foundry was founded by a botanist. That botanist was born in Thystu. When?") == []
    )


PAGES = {
    "alpha": ("Alpha", 'Alpha is a harbour town founded in 1402 with a basalt lighthouse. It is twinned with '
              '<a href="beta.html">Beta</a> and <a href="gamma.html">Gamma</a>.'),
    "beta": ("Beta", 'Beta is a river town. Its twin town is <a href="alpha.html">Alpha</a>.'),
    "gamma": ("Gamma", 'Gamma is a mountain village near <a href="alpha.html">Alpha</a>.'),
    "delta": ("Delta", "Delta is a fishing village on the coast with a small harbour."),
}  # fmt: skip


def _script(prop: str):
    def handler(body: dict) -> str:
        p = json.loads(body["messages"][-1]["content"])
        if p["walk"] == "mine":
            return json.dumps({"question": f"In what year was {p['title']} founded?", "answer": "1402"})
        if p["walk"] == "unique":
            return json.dumps({"verdict": "ok"})
        if p["walk"] == "hop":
            question = p["question"].replace(
                p["current"]["title"], f"the {prop} twinned with {p['next']['title']}"
            )
            return json.dumps(
                {"relation": "twin town", "property": prop, "question": question, "disambiguates": True}
            )
        return json.dumps({"error": "not scripted"})

    return handler


@pytest.mark.parametrize(
    ("prop", "reason"),
    [("harbour town founded in 1402", "exact_value"), ("town with a basalt lighthouse", "clue_finds_entity")],
)
def test_a_telling_clue_is_rejected_and_counted(tmp_path: Path, prop: str, reason: str) -> None:
    folder = tmp_path / "towns"
    folder.mkdir()
    for stem, (title, body) in PAGES.items():
        (folder / f"{stem}.html").write_text(f"<html><h1>{title}</h1><p>{body}</p></html>")
    corpus = open_corpus(folder, origin=origin_for(folder))
    corpus.search_dir = index_corpus(folder, cache=tmp_path / "cache")
    teacher = FakeTeacher(_script(prop))

    async def main() -> Walker:
        client = TeacherClient(TeacherConfig(cache=False), base_url=teacher.base_url)
        try:
            walker = Walker(
                corpus, WalkTeacher(client), WalkSettings(n=1, min_hops=1, max_hops=1, max_walks=4)
            )
            await run_walks(walker)
            return walker
        finally:
            await client.aclose()

    try:
        walker = asyncio.run(main())
    finally:
        teacher.close()
    summary = walker.stats.summary()
    assert summary["tasks_accepted"] == 0
    assert summary["hop_candidates_rejected"].get(reason, 0) >= 1, summary
    assert summary["rejected"][reason] >= 1, summary
