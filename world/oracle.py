"""The oracle teacher: answers chat-completions requests as planner, executor or judge.

It recognises its role from the request's structure (`world.roles`: a judge case, a
request for a plan, else an executor turn), the task from the question text in the first user
message, and, as executor, replays the conversation so far against the
task's gold path: a step counts as done only when its observation shows what the step was for
(the crop really shows the plate, the search really returned the page, the page really states the
fact). So the next turn follows the gold path *and* the evidence: a crop that missed is retried,
never claimed. Defects are injected only on purpose, per trajectory, and reported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import world.tasks as T
from pipeline.format import Turn, render_turn
from pipeline.schema import Task
from world.knobs import DEFECTS, Knobs, trajectory_defects
from world.knowledge import Knowledge
from world.messages import Message, assistant_turn, read_messages
from world.oracle_judges import judge_reply, kind_of
from world.refine import Refinement, broad_think, refined_think, refinements
from world.roles import judge_payload, role_of
from world.walk_oracle import WalkOracle, walk_payload

MAX_ATTEMPTS = 3  # tries per gold step before the executor gives up honestly
GIVE_UP = "I could not determine the answer"
_SAVED_RE = re.compile(r"\b(image_\d+\.\w+)")
_CODE_DEFECTS = ("off_target_crop", "recrop_loop", "sandbox_error")


@dataclass
class Reply:
    """What the server sends back: the assistant text plus the ground-truth record."""

    text: str
    role: str
    task_id: str | None = None
    defects: list[str] = field(default_factory=list)  # planned for this trajectory
    injected: list[str] = field(default_factory=list)  # injected in this very turn
    kind: str | None = None  # a judge's kind (answer, step, image, final)

    def record(self) -> dict[str, Any]:
        """The world's truth about this reply (for its log): all but the text and judge kind."""
        return {name: getattr(self, name) for name in ("role", "task_id", "defects", "injected")}


def salt_of(body: dict[str, Any]) -> str:
    """The rollout salt: the request's `seed`, else its `user` field (the synth stage sets one)."""
    for key in ("seed", "user"):
        if body.get(key) is not None:
            return f"{key}={body[key]}"
    return ""


def planned_defects(task: Task, decided: list[str]) -> list[str]:
    """Defects that apply to this task, with conflicts resolved (first in DEFECTS order wins)."""
    path = Knowledge.path(task)
    has_code = any(s["tool_name"] == "code" for s in path)
    tool_steps = [s for s in path if s["tool_name"] != "answer"]
    out: list[str] = []
    for name in DEFECTS:
        if name not in decided:
            continue
        if name in _CODE_DEFECTS and (not has_code or any(d in _CODE_DEFECTS for d in out)):
            continue
        if name == "skipped_plan_step" and (len(tool_steps) < 2 and any(d in _CODE_DEFECTS for d in out)):
            continue
        out.append(name)
    return out


@dataclass
class Progress:
    """Where a conversation stands against the gold path."""

    step: int = 0  # index of the next gold step
    attempts: int = 0  # failed tries of that step so far
    last_failure: str = ""
    names: dict[str, str] = field(default_factory=dict)  # gold image name -> actual name
    produced: int = 0  # images produced so far (inputs + tool outputs)
    turns: int = 0  # assistant turns so far
    bad_format_turns: int = 0
    injected: set[str] = field(default_factory=set)
    label_read: bool = False  # a produced image showed the plate text readable
    skipped_now: bool = False  # the turn about to be produced is the one that skips a plan step


class Oracle:
    """Role dispatch and the executor's replay logic (stateless per request)."""

    def __init__(self, knowledge: Knowledge, knobs: Knobs | None = None) -> None:
        self.kb = knowledge
        self.knobs = knobs or Knobs()
        self.walk = WalkOracle(knowledge)

    # ------------------------------------------------------------------ dispatch
    def respond(self, body: dict[str, Any]) -> Reply:
        messages = read_messages(body.get("messages") or [])
        walk = walk_payload(messages)  # the task walk's steps (world.walk_oracle)
        if walk:
            asked = next(m for m in reversed(messages) if m.role == "user")
            return Reply(self.walk.respond(walk, asked.images, self.knobs), role="judge", kind="walk")
        role = role_of(body, messages)
        if role == "judge":
            kind = kind_of("", judge_payload(messages))
            return Reply(judge_reply(self.kb, "", messages), role="judge", kind=kind)
        first_user = next((m for m in messages if m.role == "user"), Message("user", ""))
        task = self.kb.find_task(first_user.text, first_user.images)
        if role == "planner":
            return self._plan(task)
        return self._execute(task, messages, salt_of(body))

    def _plan(self, task: Task | None) -> Reply:
        if task is None or not task.gold_plan:
            plan = [
                {
                    "description": "Search the web for the question",
                    "tool_name": "text_search",
                    "parameters": {"query": "the question"},
                },
                {"description": "Verify the evidence and answer", "tool_name": "none", "parameters": {}},
            ]
            return Reply(json.dumps(plan), role="planner")
        return Reply(task.gold_plan, role="planner", task_id=task.task_id)

    # ------------------------------------------------------------------ executor
    def _execute(self, task: Task | None, messages: list[Message], salt: str) -> Reply:
        if task is None:
            text = render_turn(
                "This question is not one I have any knowledge of, so I cannot research it reliably.",
                answer=GIVE_UP,
            )
            return Reply(text, role="executor")
        defects = planned_defects(task, trajectory_defects(self.knobs, task.question, salt))
        path = Knowledge.path(task)
        progress = self._replay(task, path, messages, defects)
        refine = refinements(task, path, self.knobs.refine, salt)
        text, injected = self._next_turn(task, path, progress, defects, refine)
        return Reply(text, role="executor", task_id=task.task_id, defects=defects, injected=injected)

    def _history(self, messages: list[Message]) -> tuple[int, list[tuple[Turn | None, Message | None]]]:
        """(number of input images, [(assistant turn or None if unreadable, its observation)])."""
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        inputs = len(messages[users[0]].images) if users else 0
        pairs: list[tuple[Turn | None, Message | None]] = []
        for i, m in enumerate(messages):
            if m.role != "assistant":
                continue
            turn = assistant_turn(m)
            nxt = (
                messages[i + 1]
                if i + 1 < len(messages) and messages[i + 1].role in ("user", "tool")
                else None
            )
            pairs.append((turn, nxt))
        return inputs, pairs

    def _replay(
        self, task: Task, path: list[dict[str, Any]], messages: list[Message], defects: list[str]
    ) -> Progress:
        inputs, pairs = self._history(messages)
        p = Progress(produced=inputs)
        gold_code_index = 0  # gold code steps completed (for image naming)
        for turn, obs in pairs:
            p.turns += 1
            obs_text = obs.text if obs else ""
            new_names = self._produced_names(obs_text, obs.images if obs else [], p)
            if turn is None:
                p.bad_format_turns += 1
                if "format_error" in defects:
                    p.injected.add("format_error")
                continue
            if turn.tool_name is None or p.step >= len(path) - 1:
                continue
            self._skip_if_planned(path, p, defects)
            gold = path[p.step]
            if turn.tool_name != gold["tool_name"]:
                continue
            ok, why = self._satisfied(task, gold, obs, p)
            injected_here = self._was_injected(p, gold, defects)
            if injected_here == "off_target_crop":
                ok, why = True, ""  # the defect: carry on as if the crop had worked
            if ok:
                if gold["tool_name"] == "code":
                    if new_names:
                        p.names[f"image_{inputs + gold_code_index}.png"] = new_names[-1]
                    gold_code_index += 1
                p.step, p.attempts, p.last_failure = p.step + 1, 0, ""
                if p.label_read:  # the text is readable now: nothing left to process
                    p.step = len(path) - 1
            else:
                p.attempts += 1
                p.last_failure = why
        p.skipped_now = self._skip_if_planned(path, p, defects)
        return p

    def _was_injected(self, p: Progress, gold: dict[str, Any], defects: list[str]) -> str | None:
        """The code defect the turn at this state carried (same decision as when it was produced)."""
        name = self._code_defect_now(gold, p, defects)
        if name:
            p.injected.add(name)
        return name

    def _skip_if_planned(self, path: list[dict[str, Any]], p: Progress, defects: list[str]) -> bool:
        if "skipped_plan_step" in defects and p.step == _skip_index(path):
            p.step += 1
            p.injected.add("skipped_plan_step")
            return True
        return False

    @staticmethod
    def _produced_names(text: str, images: list[str], p: Progress) -> list[str]:
        """Names of the images an observation produced ('Saved image_3.png' lines, else counted)."""
        saved = [m for m in _SAVED_RE.findall(text) if "saved" in text.lower()]
        names = [n for n in dict.fromkeys(saved) if int(re.findall(r"\d+", n)[0]) >= p.produced]
        if not names and images:
            names = [f"image_{p.produced + i}.png" for i in range(len(images))]
        if names:
            p.produced = max(p.produced, *(int(re.findall(r"\d+", n)[0]) + 1 for n in names))
        return names

    def _satisfied(
        self, task: Task, gold: dict[str, Any], obs: Message | None, p: Progress
    ) -> tuple[bool, str]:
        expect = gold.get("expect") or {}
        check = expect.get("check")
        text = obs.text if obs else ""
        if obs is None:
            return False, "there was no observation"
        if _is_error(text):
            return False, "the tool reported an error"
        if check == "contains":
            want = str(expect.get("text", ""))
            return (want.casefold() in text.casefold(), f"the result does not mention {want}")
        if check in ("region", "label"):
            if not obs.images:
                return False, "no image came back"
            results = [
                self.kb.check_image(task, uri, "label")
                if task.category == "perception"
                else self.kb.check_image(task, uri, "region")
                for uri in obs.images
            ]
            if any(r.get("legible") for r in results):
                p.label_read = True
                return True, ""
            if check == "label":
                if any(r.get("found") for r in results):
                    return False, "the plate is in view but its lettering is still not readable"
                return False, "the image does not show the plate"
            return (any(r.get("found") for r in results), "the crop does not show the target region")
        return True, ""

    # ------------------------------------------------------------------ next turn
    def _next_turn(
        self,
        task: Task,
        path: list[dict[str, Any]],
        p: Progress,
        defects: list[str],
        refine: dict[int, Refinement] | None = None,
    ) -> tuple[str, list[str]]:
        injected: list[str] = ["skipped_plan_step"] if p.skipped_now else []
        answer_step = path[-1]
        limit = MAX_ATTEMPTS + (3 if "recrop_loop" in defects and p.step == 0 else 0)
        if p.step >= len(path) - 1 or p.attempts >= limit:
            if p.step < len(path) - 1:
                text = render_turn(
                    f"After several tries, {p.last_failure}; I cannot verify the answer, so I will not guess.",
                    answer=GIVE_UP,
                )
                return text, injected
            think, answer = answer_step["think"], str(answer_step["arguments"]["answer"])
            if (
                "skipped_plan_step" in defects
                and "skipped_plan_step" in p.injected
                and _skip_index(path) == len(path) - 2
            ):
                think = f"From what I have seen so far, the answer should be {answer}."
            if "wrong_answer" in defects:
                answer = _distractor(task, answer)
                think = f"Based on the evidence, the answer is {answer}."
                injected.append("wrong_answer")
            if "unsupported_claim" in defects and p.turns == 1:
                think += " " + _fabrication(task)
                injected.append("unsupported_claim")
            return render_turn(think, answer=answer), injected
        gold = path[p.step]
        arguments = _rename(gold["arguments"], p.names)
        think = gold["think"]
        refinement = (refine or {}).get(p.step)
        if refinement is not None and p.attempts == 0:  # too broad first: searched in vain, unless lucky
            arguments, think = {"queries": [refinement.broad]}, broad_think(refinement)
        elif refinement is not None and p.attempts == 1:
            think = refined_think(refinement, think)
        elif p.attempts:
            think = f"That did not work: {p.last_failure}. I will try again. " + think
        code_defect = self._code_defect_now(gold, p, defects)
        if code_defect:
            arguments, think = _defective_code(task, gold, arguments, code_defect, p.attempts)
            injected.append(code_defect)
        if "unsupported_claim" in defects and p.turns == 1:
            think = _fabrication(task) + " " + think
            injected.append("unsupported_claim")
        if "format_error" in defects and p.bad_format_turns == 0 and p.turns == 0:
            injected.append("format_error")
            body = json.dumps({"name": gold["tool_name"], "arguments": arguments})
            return f"<think>{think}</think><tool_call>{body[:-1]},}}</tool_call>", injected
        return render_turn(think, tool_name=gold["tool_name"], arguments=arguments), injected

    def _code_defect_now(self, gold: dict[str, Any], p: Progress, defects: list[str]) -> str | None:
        if gold["tool_name"] != "code" or p.step != 0:
            return None
        if "off_target_crop" in defects and p.attempts == 0:
            return "off_target_crop"
        if "sandbox_error" in defects and p.attempts == 0:
            return "sandbox_error"
        if "recrop_loop" in defects and p.attempts < 3:
            return "recrop_loop"
        return None


def _is_error(text: str) -> bool:
    lowered = text.lower()
    return (
        "traceback (most recent call last)" in lowered
        or lowered.lstrip().startswith("error")
        or "\nerror:" in lowered
    )


def _skip_index(path: list[dict[str, Any]]) -> int:
    """The gold step a 'skipped plan step' defect leaves out: the last tool step before the answer."""
    return len(path) - 2


def _rename(arguments: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    text = json.dumps(arguments)
    for gold_name, actual in sorted(names.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(gold_name, f"\0{actual}")
    return json.loads(text.replace("\0", ""))


def _defective_code(
    task: Task, gold: dict[str, Any], arguments: dict[str, Any], defect: str, attempt: int
) -> tuple[dict[str, Any], str]:
    code = arguments.get("code", "")
    if defect == "sandbox_error":
        return {"code": code.replace("crop = img.crop((", "crop = img.crop(box + (", 1)}, gold["think"]
    match = re.search(r"img\.crop\(\((\d+), (\d+), (\d+), (\d+)\)\)", code)
    if not match:
        return arguments, gold["think"]
    x0, y0, x1, y1 = (int(v) for v in match.groups())
    w, h = x1 - x0, y1 - y0
    # move the box fully off the target, in a direction that stays inside a 2560x2048 scene
    dx = (w + 60 + 90 * attempt) * (1 if x0 < 1280 else -1)
    dy = (h + 40) * (1 if y0 < 1024 else -1) * (attempt % 2)
    shifted = f"img.crop(({x0 + dx}, {y0 + dy}, {x1 + dx}, {y1 + dy}))"
    think = (
        gold["think"]
        if attempt == 0
        else f"The crop missed the target; I will shift the box and crop again. {gold['think']}"
    )
    return {"code": code.replace(match.group(0), shifted)}, think


def _distractor(task: Task, answer: str) -> str:
    """A plausible wrong answer of the same shape."""
    if answer.isdigit():
        return str(int(answer) + 1 + len(task.question) % 7)
    if len(answer) == 7 and answer[2] == "-":
        digits = "".join(str((int(c) + 3) % 10) if c.isdigit() else c for c in answer[3:])
        return answer[:3] + digits
    return answer[::-1].capitalize()


def _fabrication(task: Task) -> str:
    """A confident claim no observation supports."""
    if task.category == "perception":
        return "The crop also shows a second line of text reading 'EXPORT 1907' beneath the code."
    return (
        f"The observation also confirms that this entry was last revised in {1900 + len(task.question) % 97}."
    )


__all__ = ["Message", "Oracle", "Reply", "T", "read_messages", "salt_of"]
