"""Selection: best rollout per task, near-duplicate questions/images, cap with quotas, plan samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from filters.dedup import DedupItem, near_duplicates, phash, question_pairs
from filters.plan_samples import plan_sample
from filters.select import Candidate, best_per_task, cap_with_quotas
from pipeline.plan_format import validate_plan
from pipeline.schema import Step, Trajectory
from stages.tools.registry import tool_table

TOOLS = tool_table()  # what the checks judge calls against


def cand(tid: str, task: str, category: str = "search", score: float = 1.0, calls: int = 2) -> Candidate:
    return Candidate(tid, task, category, score, calls, f"question {task}", None)


def test_best_rollout_per_task_prefers_score_then_fewer_calls() -> None:
    kept, dropped = best_per_task(
        [
            cand("a1", "A", score=0.9),
            cand("a2", "A", score=1.0, calls=5),
            cand("a3", "A", score=1.0, calls=3),
            cand("b1", "B"),
        ],
        1,
    )
    assert sorted(c.trajectory_id for c in kept) == ["a3", "b1"]
    assert set(dropped) == {"a1", "a2"} and "a3" in dropped["a1"]


def test_cap_with_quotas_limits_listed_categories_and_is_order_independent() -> None:
    pool = [cand(f"p{i}", f"P{i}", "perception", score=1 - i / 100) for i in range(10)]
    pool += [cand(f"s{i}", f"S{i}", "search", score=1 - i / 100) for i in range(10)]
    pool += [cand(f"m{i}", f"M{i}", "multihop") for i in range(10)]
    kept, dropped = cap_with_quotas(pool, 10, {"perception": 0.2, "search": 0.3})
    categories = [c.category for c in kept]
    assert len(kept) == 10
    assert (
        categories.count("perception") == 2
        and categories.count("search") == 3
        and categories.count("multihop") == 5
    )
    assert {"p0", "p1", "s0", "s1", "s2"} <= {c.trajectory_id for c in kept}
    assert any(r.startswith("quota:") for r in dropped.values()) and any(
        r.startswith("cap:") for r in dropped.values()
    )
    again, _ = cap_with_quotas(list(reversed(pool)), 10, {"perception": 0.2, "search": 0.3})
    assert [c.trajectory_id for c in again] == [c.trajectory_id for c in kept]
    with pytest.raises(ValueError, match="sum"):
        cap_with_quotas(pool, 10, {"perception": 0.7, "search": 0.7})


def test_near_duplicate_questions_on_the_same_image() -> None:
    rng = np.random.default_rng(3)
    scene = Image.fromarray(rng.integers(0, 255, size=(128, 128, 3), dtype=np.uint8))
    other = Image.fromarray(rng.integers(0, 255, size=(128, 128, 3), dtype=np.uint8))
    hashes = {"s": phash(scene), "s2": phash(scene.resize((100, 100))), "o": phash(other)}
    q = "What is the name of the company whose logo appears on the red sign in the upper left corner of this photo?"
    items = [
        DedupItem("a", q, "s"),
        DedupItem("b", q.replace("photo?", "picture?"), "s2"),  # same question, rescaled image
        DedupItem("c", q, "o"),  # same question, another image: a different task
        DedupItem(
            "d", "How many windows does the tallest building in the scene have on its south face?", "s"
        ),
    ]
    dupes = near_duplicates(
        items, question_similarity=0.7, image_distance=6, require_both=True, image_hash=hashes.get
    )
    assert dupes == {"b": "a"}
    either = near_duplicates(
        items, question_similarity=0.7, image_distance=6, require_both=False, image_hash=hashes.get
    )
    assert either == {"b": "a", "c": "a", "d": "a"}


def test_templated_questions_in_one_bucket_are_compared_with_its_head_only() -> None:
    """A thousand copies of one template share every LSH bucket: each is paired with the
    best-ranked copy (n - 1 pairs), never with every other copy (n (n - 1) / 2)."""
    q = "In what year was the organisation whose emblem is shown in this picture founded?"
    items = [DedupItem(f"k{i}", q, None) for i in range(1000)]
    assert question_pairs(items, 0.8) == {(0, j) for j in range(1, 1000)}
    dupes = near_duplicates(
        items, question_similarity=0.8, image_distance=-1, require_both=True, image_hash=dict().get
    )
    assert len(dupes) == 999 and set(dupes.values()) == {"k0"}


def test_plan_sample_uses_placeholders_and_validates() -> None:
    def call(i: int, tool: str, args: dict, obs: str, images=()) -> Step:
        return Step(
            index=i,
            think="t",
            action="tool_call",
            tool_name=tool,
            arguments=json.dumps(args),
            observation_text=obs,
            observation_images=list(images),
        )

    t = Trajectory(
        task_id="t-1",
        question="Who founded the company whose logo is on the sign?",
        images=["scene"],
        steps=[
            call(
                0,
                "code",
                {"code": "Image.open('/input/image_0.png').crop((10, 20, 300, 400)).save('/output/c.png')"},
                "saved",
                ["crop"],
            ),
            call(
                1,
                "image_search",
                {"image_paths": ["image_1.png"]},
                "1. Velmora Dynamics logo\nhttps://w.local/wiki/Velmora",
            ),
            call(
                2,
                "text_search",
                {"queries": ["Velmora Dynamics founder"]},
                "1. History https://w.local/wiki/Velmora_history",
            ),
            call(3, "web_visit", {"urls": ["https://w.local/wiki/Velmora_history"]}, "Founded by Arlo Quen."),
            Step(index=4, think="done", action="answer", answer="Arlo Quen"),
        ],
        final_answer="Arlo Quen",
    )
    sample, why = plan_sample(t, TOOLS)
    assert sample is not None, why
    assert sample.mode == "plan" and sample.category == "plan" and sample.trajectory_id != t.trajectory_id
    steps, errors = validate_plan(json.loads(sample.steps[0].answer), TOOLS)
    assert errors == []
    assert steps[1].parameters == {"image_path": "[Image produced in Step 1]"}
    assert steps[2].parameters == {"query": "[Entity identified in Step 2] founder"}
    assert steps[3].parameters == {"url": "[URL found in Step 3]"}
    assert "[Entity identified in Step 2]" in steps[2].description
    assert steps[-1].tool_name == "none"
    assert "Arlo" not in sample.steps[0].answer  # the plan never leaks the answer


def test_plan_sample_refuses_too_long_trajectories() -> None:
    steps = [
        Step(
            index=i,
            think="t",
            action="tool_call",
            tool_name="text_search",
            arguments=json.dumps({"queries": [f"q{i}"]}),
            observation_text="r",
        )
        for i in range(10)
    ] + [Step(index=10, think="t", action="answer", answer="x")]
    sample, why = plan_sample(Trajectory(task_id="t", question="q", steps=steps, final_answer="x"), TOOLS)
    assert sample is None and "exceed" in why


def test_reading_only_chosen_ids_keeps_the_first_copy_like_reading_all(tmp_path) -> None:
    from filters.run_checks import iter_raw
    from pipeline.store import RunStore

    store = RunStore(tmp_path / "run")

    def shard(rollouts: range, question: str) -> None:
        store.write_records(
            "raw", [Trajectory(task_id="t-1", question=question, rollout=r) for r in rollouts], Trajectory
        )

    shard(range(0, 3), "first copy")
    shard(range(2, 5), "second copy")  # rollout 2 again: the reader keeps the first copy only
    everything = [t for batch in iter_raw(store) for t in batch]
    assert len(everything) == 5  # rollout 2 once, from whichever shard is read first
    wanted = {t.trajectory_id for t in everything if t.rollout in (1, 2, 4)}
    picked = [t for batch in iter_raw(store, only=wanted) for t in batch]
    assert picked == [t for t in everything if t.trajectory_id in wanted] and len(picked) == 3
