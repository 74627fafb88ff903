"""The oracle's answers to the task walk's prompts (mine, unique, hop, visual, check), from the KG.

Recognised by structure, like every other role: the last user message carries a JSON object
whose `walk` field names the step (`{"walk": "hop", "question", "answer", "current", "next"}`).
The oracle answers as a careful model would, from the knowledge graph rather than from the
page text it is shown: it mines an attribute question, calls occupations and kinds generic,
describes an entity through its relation to the next one plus a property that singles it out
(and says so when none does), and swaps the last name for "the ... in this picture".
`Knobs.walk` makes it err on purpose, per request: `unreadable` (prose, no JSON), `leak` (the
rewrite keeps the name), `not_unique` (the check finds a second answer), `generic` (any answer
is called generic).
"""

from __future__ import annotations

import itertools
import json
from functools import cached_property
from typing import Any

from pipeline.images import ImageError, data_uri_bytes, decode_image
from pipeline.phash import image_phash
from world.kg import Entity
from world.knobs import Knobs, drawn, unit
from world.knowledge import Knowledge
from world.messages import Message, payload_of
from world.tasks import ATTRIBUTE_QUESTIONS, RELATION_NOUN, RELATION_PHRASES, TYPE_NOUN

STEPS = ("mine", "unique", "hop", "visual", "check")
#: the attribute that names what kind of thing an entity is (a generic answer, a noun for it)
KIND_ATTRIBUTE = {
    "person": "occupation",
    "organisation": "industry",
    "place": "kind",
    "species": "kind",
    "artwork": "medium",
}
PROPERTY_PHRASES = {
    "born": "born in {v}",
    "founded": "founded in {v}",
    "employees": "with {v} employees",
    "population": "with a population of {v}",
    "described": "first described in {v}",
    "length_mm": "{v} mm long",
    "year": "completed in {v}",
    "height_cm": "{v} cm tall",
}
_PICTURE_NOUN = {"person": "person", "organisation": "organisation", "place": "place", "species": "species",
                 "artwork": "artwork"}  # fmt: skip


def walk_payload(messages: list[Message]) -> dict[str, Any]:
    """The walk step the last user message asks for ({} when it is no walk request)."""
    last = next((m for m in reversed(messages) if m.role == "user"), None)
    if last is None or '"walk"' not in last.text:
        return {}
    data = payload_of(last.text)
    return data if data.get("walk") in STEPS else {}


class WalkOracle:
    """Answers one walk request; stateless apart from lookups built once per world."""

    def __init__(self, kb: Knowledge) -> None:
        self.kb = kb

    @cached_property
    def by_name(self) -> dict[str, Entity]:
        return {e.name: e for e in self.kb.entities.values()}

    def respond(self, payload: dict[str, Any], images: list[str], knobs: Knobs) -> str:
        step = payload["walk"]
        key = json.dumps(payload, sort_keys=True)
        if drawn(knobs.walk.get("unreadable", 0.0), "walk-unreadable", key):
            return "Let me think about this page. The question could be about its founding, I suppose."
        reply = getattr(self, f"_{step}")(payload, images, knobs, key)
        return json.dumps(reply, ensure_ascii=False)

    def _entity(self, value: Any) -> Entity | None:
        title = value.get("title") if isinstance(value, dict) else value
        return self.by_name.get(str(title or "").strip())

    # ------------------------------------------------------------------ steps
    def _mine(self, p: dict[str, Any], images: list[str], knobs: Knobs, key: str) -> dict[str, Any]:
        e = self._entity(p)
        if e is None:
            return {"error": "I do not know this page"}
        choices = ATTRIBUTE_QUESTIONS[e.type]
        attr, template = choices[int(len(choices) * unit("walk-mine", e.slug))]
        return {"question": template.format(x=e.name), "answer": e.attributes[attr]}

    def _unique(self, p: dict[str, Any], images: list[str], knobs: Knobs, key: str) -> dict[str, Any]:
        e = self._entity(p)
        answer = str(p.get("answer", "")).strip()
        if drawn(knobs.walk.get("generic", 0.0), "walk-generic", key):
            return {"verdict": "generic", "reason": "the answer names a kind of thing"}
        if e is None or answer not in e.attributes.values():
            return {"verdict": "ambiguous", "reason": "the answer is not stated for this entity"}
        if answer == e.attributes.get(KIND_ATTRIBUTE[e.type]):
            return {"verdict": "generic", "reason": f"'{answer}' is a generic term shared by many entries"}
        return {"verdict": "ok", "reason": "a specific value stated on the page"}

    def _hop(self, p: dict[str, Any], images: list[str], knobs: Knobs, key: str) -> dict[str, Any]:
        cur, nxt = self._entity(p.get("current")), self._entity(p.get("next"))
        question, answer = str(p.get("question", "")), str(p.get("answer", ""))
        if cur is None or nxt is None:
            return {"error": "I do not know these pages"}
        description, relation, prop, unique = self.describe(cur, nxt, answer)
        if description is None:
            return {"relation": "", "property": "", "question": question, "disambiguates": False}
        rewritten = (
            question
            if drawn(knobs.walk.get("leak", 0.0), "walk-leak", key)
            else (question.replace(cur.name, description))
        )
        return {"relation": relation, "property": prop, "question": rewritten, "disambiguates": unique}

    def describe(self, cur: Entity, nxt: Entity, answer: str) -> tuple[str | None, str, str, bool]:
        """(description of `cur` through `nxt`, relation, property, whether it is unique)."""
        props = [a for a, v in cur.attributes.items() if a in PROPERTY_PHRASES and v != answer]
        kind = cur.attributes.get(KIND_ATTRIBUTE[cur.type], TYPE_NOUN[cur.type])
        noun = kind if kind != answer else TYPE_NOUN[cur.type]
        back = next((r for r, s in nxt.links.items() if s == cur.slug), None)
        if back is not None:  # nxt's page names cur as its <relation>: unique by itself
            prop = props[0] if props else ""
            clue = f", a {noun} {PROPERTY_PHRASES[prop].format(v=cur.attributes[prop])}," if prop else ""
            phrase = RELATION_PHRASES[back].format(x=nxt.name)
            return f"{phrase}{clue}", RELATION_NOUN[back] + " of", clue.strip(", "), True
        forward = next((r for r, s in cur.links.items() if s == nxt.slug), None)
        if forward is None:
            return None, "", "", False
        same = [
            e for e in self.kb.entities.values()
            if e.type == cur.type and e.links.get(forward) == nxt.slug
        ]  # fmt: skip
        for prop in props:
            rivals = [e for e in same if e.attributes.get(prop) == cur.attributes[prop]]
            if len(rivals) == 1:
                phrase = PROPERTY_PHRASES[prop].format(v=cur.attributes[prop])
                description = f"the {noun} {phrase} whose {RELATION_NOUN[forward]} is {nxt.name}"
                return description, RELATION_NOUN[forward], phrase, True
        return (
            f"the {noun} whose {RELATION_NOUN[forward]} is {nxt.name}",
            RELATION_NOUN[forward],
            "",
            len(same) == 1,
        )

    def _visual(self, p: dict[str, Any], images: list[str], knobs: Knobs, key: str) -> dict[str, Any]:
        e = self._entity(p.get("entity"))
        question = str(p.get("question", ""))
        if e is None or not images:
            return {"depicts": False, "question": question}
        if not self._shows(e, images[0]):
            return {"depicts": False, "question": question}
        noun = f"the {_PICTURE_NOUN[e.type]} whose emblem is shown in this picture"
        return {"depicts": True, "question": question.replace(e.name, noun)}

    def _shows(self, e: Entity, uri: str) -> bool:
        try:
            seen = decode_image(data_uri_bytes(uri), name="walk image")
        except ImageError:
            return False
        own = self.kb.dir / "corpus" / "images" / f"{e.slug}.png"
        if not own.is_file():
            return False
        distance = image_phash(seen) ^ image_phash(decode_image(own.read_bytes()))
        return distance.bit_count() <= 10  # a rescaled, re-encoded copy of the entity's own image

    def _check(self, p: dict[str, Any], images: list[str], knobs: Knobs, key: str) -> dict[str, Any]:
        chain = [self._entity(t) for t in p.get("chain") or []]
        question = str(p.get("question", ""))
        if drawn(knobs.walk.get("not_unique", 0.0), "walk-not-unique", key):
            return {
                "unique": False,
                "second_answer": "another entry",
                "reason": "a second entry fits the clues",
            }
        if not chain or any(e is None for e in chain):
            return {"unique": False, "second_answer": None, "reason": "the chain names pages I do not know"}
        allowed = set(p.get("named") or [])  # a text-only variant names its last entity on purpose
        named = [e.name for e in chain if e is not None and e.name in question and e.name not in allowed]
        if named:
            return {"unique": False, "second_answer": None, "reason": f"the question names {named[0]}"}
        for cur, nxt in itertools.pairwise(chain):
            if cur is None or nxt is None or not self.describe(cur, nxt, str(p.get("answer", "")))[3]:
                return {"unique": False, "second_answer": None, "reason": "a hop fits several entries"}
        return {"unique": True, "second_answer": None, "reason": "each clue singles out one entry"}
