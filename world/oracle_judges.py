"""The oracle's judges: answer, step, image and final-answer checks with the world's knowledge.

Each judge request carries a JSON object in its last user message (fenced, bare or inside
prose); the reply is `{"verdict": "pass"|"fail", "reason": "..."}`. Kinds (from a name
`judge_<kind>` when the caller knows it, else from the object's keys, as the oracle does):
- answer {question, gold_answer, aliases, predicted}: normalised match against gold and aliases;
- step {question, tool_name, arguments, observation_text, next_thought}: every world fact the
  thought asserts (numbers, codes) must appear in the observation, question or call; after a
  code step that produced an image, also allowed: text the world knows that image can show (the
  task's plate code), whose legibility the image judge checks;
- image {question, next_thought} + image: if the thought claims to see the target, the image
  must really show the task's gold region (and, for plates, readable text); a code or number
  the thought quotes from a plate must be the plate's text;
- final {question, last_thought, answer}: the answer must be what the last thought concluded.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pipeline.answers import answers_match, normalize_answer
from world.messages import payload_of
from world.roles import judge_message

if TYPE_CHECKING:
    from world.knowledge import Knowledge
    from world.messages import Message

# a code or number the thought asserts; not a rotation angle or a pixel size it mentions
_FACT_RE = re.compile(r"\b(?:[A-Z]{2}-\d{4}\b|\d{3,}\b(?!\s*(?:degrees?|°|px|pixels?)))")
# text in quotes ('EXPORT 1907', "Main St"); an apostrophe inside a word opens no quote
_QUOTE_RE = re.compile(r"""(?<!\w)['"“‘]([^'"”’\n]{2,80})['"”’](?!\w)""")
_CLAIM_WORDS = ("shows", "see", "visible", "reads", "read", "clearly", "legible", "code")


def normalise(text: str) -> str:
    """The shared answer normaliser (`pipeline.answers`), for containment checks of facts."""
    return normalize_answer(text)


def answer_matches(predicted: str, gold: str, aliases: list[str]) -> bool:
    """A judge reads prose: the scorer's long-form reading (the gold carried by the reply)."""
    return answers_match(predicted, gold, aliases)


def _verdict(ok: bool, reason: str) -> str:
    return json.dumps({"verdict": "pass" if ok else "fail", "reason": reason})


def _payload(messages: list[Message]) -> tuple[dict[str, Any], list[str]]:
    case = judge_message(messages) or next((m for m in reversed(messages) if m.role == "user"), None)
    if case is None:
        return {}, []
    return payload_of(case.text), case.images


def kind_of(name: str, data: dict[str, Any]) -> str:
    """The judge kind: from a `judge_<kind>` name, else from the payload's keys."""
    if name.startswith("judge_"):
        return name[len("judge_") :]
    keys = set(data)
    if "predicted" in keys:
        return "answer"
    if "observation_text" in keys:
        return "step"
    if "last_thought" in keys:
        return "final"
    return "image"


def judge_reply(kb: Knowledge, name: str, messages: list[Message]) -> str:
    data, images = _payload(messages)
    if not data:
        return _verdict(False, "no JSON object found in the judge request")
    kind = kind_of(name, data)
    question = str(data.get("question", ""))
    task = kb.find_task(question) if question else None
    if kind == "answer":
        gold = str(data.get("gold_answer") or (task.gold_answer if task else "") or "")
        aliases = list(data.get("aliases") or (task.answer_aliases if task else []))
        ok = answer_matches(str(data.get("predicted", "")), gold, aliases)
        return _verdict(ok, "matches the gold answer" if ok else f"expected {gold!r}")
    if kind == "final":
        answer, thought = str(data.get("answer", "")), str(data.get("last_thought", ""))
        ok = bool(normalise(answer)) and normalise(answer) in normalise(thought)
        return _verdict(
            ok,
            "the answer is what the last thought concluded"
            if ok
            else "the answer does not appear in the last thought",
        )
    if kind == "step":
        return _judge_step(data, _plate_texts(kb, question))
    # the image judge sees a crop, not the task image: try every task with this question
    verdicts = [
        _judge_image(kb, t, _claims(str(data.get("next_thought", ""))), images)
        for t in kb.candidates(question)
    ]
    passing = [v for v in verdicts if json.loads(v)["verdict"] == "pass"]
    return (passing or verdicts or [_judge_image(kb, None, "", images)])[0]


def _plate_texts(kb: Knowledge, question: str) -> list[str]:
    """What the plates of this question's images say (a perception task's code is its gold)."""
    return [
        text
        for t in kb.candidates(question)
        if t.category == "perception" and t.gold_answer
        for text in (t.gold_answer, *t.answer_aliases)
    ]


#: A tool call the thought quotes while planning ("I could write <tool_call>...</tool_call>"):
#: a plan, not a claim about what the image or the observation shows.
_QUOTED_CALL_RE = re.compile(r"<tool_call>.*?(?:</tool_call>|$)", re.DOTALL)


def _claims(thought: str) -> str:
    """The thought without the calls it quotes."""
    return _QUOTED_CALL_RE.sub(" ", thought)


def _quoted_facts(thought: str) -> list[str]:
    """Codes, numbers and quoted text a thought asserts."""
    thought = _claims(thought)
    return list(dict.fromkeys([*_FACT_RE.findall(thought), *_QUOTE_RE.findall(thought)]))


def _judge_step(data: dict[str, Any], plate_texts: list[str] = ()) -> str:
    observation = str(data.get("observation_text") or "")
    thought = _claims(str(data.get("next_thought") or ""))
    if re.search(r"traceback|error", observation, re.IGNORECASE) and re.search(
        r"\b(shows|found|clearly|confirms)\b", thought, re.IGNORECASE
    ):
        return _verdict(False, "the tool failed but the thought claims a result")
    visual = data.get("tool_name") == "code" and re.search(r"saved image_\d+", observation, re.IGNORECASE)
    seen = [observation, str(data.get("question", "")), json.dumps(data.get("arguments", ""))]
    if visual:  # the produced image may show a plate: the image judge checks it is legible
        seen += plate_texts
    context = normalise(" ".join(seen))
    unsupported = [f for f in _FACT_RE.findall(thought) if normalise(f) not in context]
    if unsupported:
        return _verdict(False, f"the thought asserts {unsupported} which the observation does not show")
    return _verdict(True, "the thought is supported by the observation")


def _judge_image(kb: Knowledge, task: Any, thought: str, images: list[str]) -> str:
    if task is None or task.gold_region is None:
        return _verdict(True, "no gold region to check for this question")
    if not images:
        return _verdict(False, "no image was attached")
    claims = any(w in thought.casefold() for w in _CLAIM_WORDS)
    kind = "label" if task.category == "perception" else "region"
    result = kb.check_image(task, images[-1], kind)
    shows = bool(result.get("found"))
    reads = kind == "label" and bool(_FACT_RE.search(thought))  # the thought quotes a code it read
    missed = re.search(r"\b(missed|did not|does not|not show|try again)\b", thought, re.IGNORECASE)
    if missed:
        return _verdict(
            not shows,
            "the thought correctly says the image misses the target"
            if not shows
            else "the thought says the image misses the target, but it shows it",
        )
    if reads and not result.get("legible"):
        return _verdict(False, f"the thought quotes text the image does not show legibly ({result})")
    if kind == "label":
        plate = normalise(" ".join([task.gold_answer or "", *task.answer_aliases]))
        foreign = [f for f in _quoted_facts(thought) if normalise(f) not in plate]
        if foreign:
            return _verdict(False, f"the thought quotes {foreign}, which the plate in the image does not say")
    if claims and not shows:
        return _verdict(
            False, f"the thought claims to see the target but the image does not show it ({result})"
        )
    return _verdict(True, f"the image supports the thought ({result})")
