"""The oracle searches in vain and refines on a walked task's search steps (issue 27, part 4),
deterministically per rollout; the filter keeps such a rollout whole (a refined query is no
repeat, no skipped plan step) and still catches a thought that claims what the vain search did
not show."""

from __future__ import annotations

import json
from pathlib import Path

from filters.base import CheckContext
from filters.grounding import GroundingCheck
from filters.plan_alignment import PlanAlignmentCheck
from filters.redundancy import RedundancyCheck
from pipeline.format import parse_turn
from pipeline.schema import Plan, PlanStep, Step, Task, Trajectory
from prompts import load_prompt
from stages.synth.execute import PlanTracker
from stages.tools.registry import tool_table
from world import Knobs
from world.knowledge import Knowledge
from world.oracle import Oracle

QUERY = "Ostrava founder ironworks founded in the 1850s"
BROAD = "ironworks founded in the 1850s"
FOUNDRY = "http://world.trajforge.local/wiki/zeily-foundry"
TOWN = "http://world.trajforge.local/wiki/ostrava"
PLAN = [
    ("Reverse image search the picture", "image_search"),
    ("Search for the entry linked to the town", "text_search"),
    ("Visit the page of the entry found in Step 2", "web_visit"),
    ("Check and answer", "none"),
]


def _task() -> Task:
    path = [
        {"think": "I will identify the picture.", "tool_name": "image_search",
         "arguments": {"image_paths": ["image_0.png"]}, "expect": {"check": "contains", "text": TOWN}},
        {"think": "I now know Ostrava; I will search for the entry described through it.",
         "tool_name": "text_search", "arguments": {"queries": [QUERY]},
         "expect": {"check": "contains", "text": FOUNDRY}},
        {"think": "I will read its page.", "tool_name": "web_visit", "arguments": {"urls": [FOUNDRY]},
         "expect": {"check": "contains", "text": "6218"}},
        {"think": "The page states it: 6218.", "tool_name": "answer", "arguments": {"answer": "6218"},
         "expect": {}},
    ]  # fmt: skip
    hop = {"title": "Zeily Foundry", "url": FOUNDRY, "next_title": "Ostrava", "next_url": TOWN,
           "relation": "founder", "property": BROAD, "tool": "text_search", "query": QUERY}  # fmt: skip
    return Task(
        source="walk:world",
        category="multihop",
        question="An ironworks founded in the 1850s was founded by a man born in the town whose emblem "
        "is shown in this picture. How many people does that ironworks employ?",
        gold_answer="6218",
        gold_plan=json.dumps([{"description": d, "tool_name": t, "parameters": {}} for d, t in PLAN]),
        gold_path=json.dumps(path),
        meta=json.dumps({"walk": True, "hops": 1, "hop_steps": [hop]}),
    )


class Conversation:
    """An executor conversation with the oracle: its turns, and the observations we send back."""

    def __init__(self, oracle: Oracle, task: Task, seed: int) -> None:
        self.oracle, self.task, self.seed = oracle, task, seed
        self.messages: list[dict] = [
            {"role": "system", "content": load_prompt("executor_general").text},
            {"role": "user", "content": task.question},
        ]
        self.steps: list[Step] = []

    def turn(self):
        reply = self.oracle.respond({"messages": self.messages, "seed": self.seed})
        turn = parse_turn(reply.text).turns[0]
        self.messages.append({"role": "assistant", "content": reply.text})
        action = "answer" if turn.answer is not None else "tool_call"
        self.steps.append(Step(index=len(self.steps), think=turn.think or "", action=action,
                               tool_name=turn.tool_name, answer=turn.answer,
                               arguments=json.dumps(turn.arguments) if turn.arguments else None))  # fmt: skip
        return turn

    def observe(self, text: str) -> None:
        self.steps[-1].observation_text = text
        self.messages.append({"role": "user", "content": f"<observation>{text}</observation>"})


def _oracle(small_world: Path, monkeypatch, refine: float) -> tuple[Oracle, Task]:
    kb = Knowledge(small_world)
    task = _task()
    monkeypatch.setattr(kb, "find_task", lambda text, images=None: task)
    return Oracle(kb, Knobs(refine=refine)), task


VAIN = f"1. Kladno Ironworks - {FOUNDRY.replace('zeily', 'kladno')}\n   An ironworks founded in 1856."
FOUND = f"1. Zeily Foundry - {FOUNDRY}\n   An ironworks in the region."


def _first_search(conversation: Conversation):
    assert conversation.turn().tool_name == "image_search"
    conversation.observe(f"1. Ostrava - {TOWN}")
    return conversation.turn()


def test_a_vain_broad_search_is_refined_with_the_known_entry(small_world: Path, monkeypatch) -> None:
    oracle, task = _oracle(small_world, monkeypatch, refine=1.0)
    talk = Conversation(oracle, task, seed=1)
    broad = _first_search(talk)
    assert broad.tool_name == "text_search" and broad.arguments == {"queries": [BROAD]}
    assert "did not" not in broad.think  # a plan, no claim about results it has not seen
    talk.observe(VAIN)  # the clue alone brings up another ironworks
    refined = talk.turn()
    assert refined.tool_name == "text_search" and refined.arguments == {"queries": [QUERY]}
    assert "did not find" in refined.think and "Ostrava" in refined.think and FOUNDRY not in refined.think
    talk.observe(FOUND)
    assert talk.turn().tool_name == "web_visit"
    talk.observe("Zeily Foundry ... employees: 6218")
    assert talk.turn().answer == "6218"


def test_a_broad_search_that_shows_the_entry_needs_no_refinement(small_world: Path, monkeypatch) -> None:
    oracle, task = _oracle(small_world, monkeypatch, refine=1.0)
    talk = Conversation(oracle, task, seed=1)
    assert _first_search(talk).arguments == {"queries": [BROAD]}
    talk.observe(FOUND)  # lucky: the evidence is there, so the step is done
    assert talk.turn().tool_name == "web_visit"


def test_refining_is_drawn_per_rollout_and_repeats_on_a_rerun(small_world: Path, monkeypatch) -> None:
    oracle, task = _oracle(small_world, monkeypatch, refine=0.5)
    first = {
        seed: _first_search(Conversation(oracle, task, seed)).arguments["queries"][0] for seed in range(24)
    }
    again = {
        seed: _first_search(Conversation(oracle, task, seed)).arguments["queries"][0] for seed in range(24)
    }
    assert first == again
    assert 4 <= sum(q == BROAD for q in first.values()) <= 20, first  # some rollouts do, some do not
    never, _ = _oracle(small_world, monkeypatch, refine=0.0)
    assert _first_search(Conversation(never, task, seed=1)).arguments == {"queries": [QUERY]}


def _trajectory(talk: Conversation, task: Task) -> Trajectory:
    plan = Plan(task_id=task.task_id, valid=True,
                steps=[PlanStep(description=d, tool_name=t) for d, t in PLAN])  # fmt: skip
    tracker = PlanTracker(plan)
    for step in talk.steps:
        step.plan_step = tracker.serve(step.action, step.tool_name)
    return Trajectory(task_id=task.task_id, category="multihop", question=task.question, plan=task.gold_plan,
                      steps=talk.steps, final_answer=talk.steps[-1].answer)  # fmt: skip


def test_the_filter_keeps_a_refined_rollout_and_still_catches_a_false_claim(
    small_world: Path, monkeypatch
) -> None:
    oracle, task = _oracle(small_world, monkeypatch, refine=1.0)
    talk = Conversation(oracle, task, seed=1)
    _first_search(talk)
    talk.observe(VAIN)
    talk.turn()
    talk.observe(FOUND)
    talk.turn()
    talk.observe("Zeily Foundry ... employees: 6218")
    talk.turn()
    trajectory = _trajectory(talk, task)
    assert [s.plan_step for s in trajectory.steps] == [1, 2, 2, 3, 4]  # the refinement serves step 2
    ctx = CheckContext(tools=tool_table())
    for check in (RedundancyCheck(), GroundingCheck(), PlanAlignmentCheck()):
        verdict = check.run(trajectory, ctx)
        assert verdict.keep, (check.name, verdict)
    # honesty: a thought after the vain search that claims it showed the entry's figures is caught
    trajectory.steps[2].think = "The search results show Zeily Foundry with 6218 employees."
    assert not GroundingCheck().run(trajectory, ctx).keep


def test_a_repeated_call_serves_its_step_instead_of_jumping_over_others() -> None:
    """A refined search between plan steps of other tools serves the search step it refines;
    a skipped step is still a skip, and a next step of the same tool is still served next."""
    plan = Plan(task_id="t", valid=True, steps=[PlanStep(description=str(i), tool_name=t) for i, t in
                enumerate(["image_search", "text_search", "web_visit", "text_search", "web_visit", "none"])])  # fmt: skip
    tracker = PlanTracker(plan)
    calls = ["image_search", "text_search", "text_search", "web_visit", "text_search", "web_visit"]
    assert [tracker.serve("tool_call", c) for c in calls] == [1, 2, 2, 3, 4, 5]
    tracker = PlanTracker(plan)
    assert [tracker.serve("tool_call", c) for c in ["image_search", "web_visit"]] == [1, 3]
    two = Plan(task_id="t", valid=True, steps=[PlanStep(description="a", tool_name="code"),
                                                PlanStep(description="b", tool_name="code")])  # fmt: skip
    tracker = PlanTracker(two)
    assert [tracker.serve("tool_call", "code") for _ in range(3)] == [1, 2, 2]
