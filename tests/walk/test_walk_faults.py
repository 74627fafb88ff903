"""Rejections with their reasons, through the world's knobs (`Knobs.walk`), and the checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.config import TeacherConfig
from pipeline.teacher import TeacherClient
from stages.readers.corpus.html_folder import WorldCorpus
from stages.tasks.walk.checks import concise, in_evidence, leaked
from stages.tasks.walk.run import SHORTCUTS, Walker, WalkSettings, run_walks
from stages.tasks.walk.teacher import WalkTeacher
from world import Knobs, WorldServer


def _walk(world: Path, knobs: Knobs, n: int = 3, max_walks: int = 6) -> Walker:
    async def main() -> Walker:
        with WorldServer(world, knobs=knobs) as server:
            client = TeacherClient(TeacherConfig(cache=False), base_url=server.openai_base_url)
            try:
                walker = Walker(
                    WorldCorpus(world), WalkTeacher(client), WalkSettings(n=n, max_walks=max_walks)
                )
                await run_walks(walker)
                return walker
            finally:
                await client.aclose()

    return asyncio.run(main())


@pytest.mark.slow  # builds a world (10-20 s on 2 cores)
def test_without_faults_walks_are_accepted(walk_small_world: Path) -> None:
    walker = _walk(walk_small_world, Knobs())
    assert walker.stats.accepted >= 2, walker.stats.summary()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("unreadable", "llm_unreadable"),
        ("leak", "leak"),
        ("not_unique", "not_unique"),
        ("generic", "generic_answer"),
    ],
)
def test_a_faulty_reply_is_rejected_with_its_reason(walk_small_world: Path, fault: str, reason: str) -> None:
    walker = _walk(walk_small_world, Knobs(walk={fault: 1.0}), max_walks=4)
    summary = walker.stats.summary()
    assert summary["tasks_accepted"] == 0
    # every walk that reached the faulty step fails there; the rest stopped earlier on the
    # corpus's own shortcut checks (a clue or the question searched finds its entity)
    others = {k: v for k, v in summary["rejected"].items() if v and k != reason}
    assert summary["rejected"][reason] >= 1 and set(others) <= set(SHORTCUTS), summary
    assert sum(summary["rejected"].values()) == summary["walks_started"] == 4, summary


def test_unknown_walk_fault_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown walk faults"):
        Knobs(walk={"typo": 0.5})


def test_leak_check_matches_names_normalised() -> None:
    names = ["Zoë Brask", "The Lantern of Vou", "Pyvor Museum (Kunem)"]
    assert leaked("Who made the woodcut held by zoe brask?", names) == ["Zoë Brask"]
    assert leaked("What is Lantern of Vou made of?", names) == ["The Lantern of Vou"]
    assert leaked("When was the PYVOR-MUSEUM founded?", names) == ["Pyvor Museum (Kunem)"]
    assert leaked("When was the museum whose founder is a glassblower founded?", names) == []


def test_answer_must_be_concise_and_stated() -> None:
    assert concise("1,402") and not concise("a very long answer that keeps going on and on")
    assert in_evidence("1402", "It was founded in 1,402 by settlers.")
    assert not in_evidence("140", "It was founded in 1402.")


@pytest.mark.slow
def test_text_only_variant_is_kept_as_a_separate_task(walk_small_world: Path) -> None:
    async def main() -> list:
        with WorldServer(walk_small_world) as server:
            client = TeacherClient(TeacherConfig(cache=False), base_url=server.openai_base_url)
            try:
                settings = WalkSettings(n=2, max_walks=6, text_only=True)
                walker = Walker(WorldCorpus(walk_small_world), WalkTeacher(client), settings)
                return await run_walks(walker)
            finally:
                await client.aclose()

    walked = asyncio.run(main())
    assert walked
    for item in walked:
        text, visual = sorted(item.tasks, key=lambda t: "picture" in t.question)
        final = item.chain.titles[-1]
        assert final in text.question and final not in visual.question
        assert leaked(text.question, item.chain.titles[:-1]) == []
        assert '"text_only": true' in text.meta and item.image is not None
