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

import collections
import itertools
import json
import re
from functools import cached_property
from typing import Any

from pipeline.images import ImageError, data_uri_bytes, decode_image
from pipeline.phash import image_phash
from world.blur import blur
from world.kg import Entity
from world.knobs import Knobs, drawn, unit
from world.knowledge import Knowledge
from world.messages import Message, payload_of
from world.tasks import ATTRIBUTE_QUESTIONS, RELATION_NOUN, TYPE_NOUN

STEPS = ("mine", "unique", "hop", "visual", "check")
#: the attribute that names what kind of thing an entity is (a generic answer, a noun for it)
KIND_ATTRIBUTE = {
    "person": "occupation",
    "organisation": "industry",
    "place": "kind",
    "species": "kind",
    "artwork": "medium",
}
#: a property as a clue, its value blurred first (world.blur): (phrase, year or count)
PROPERTY_PHRASES = {
    "born": ("born in {v}", "year"),
    "founded": ("founded in {v}", "year"),
    "employees": ("with {v} employees", "count"),
    "population": ("with a population of {v}", "count"),
    "described": ("first described in {v}", "year"),
    "length_mm": ("{v} mm long", "count"),
    "year": ("completed in {v}", "year"),
    "height_cm": ("{v} cm tall", "count"),
}
#: one sentence per hop: `s` holds the relation, `x` is what it points at
RELATION_SENTENCES = {
    "birthplace": "{s} was born in {x}",
    "employer": "{s} worked for {x}",
    "founder": "{s} was founded by {x}",
    "headquarters": "{s} is headquartered in {x}",
    "habitat": "{s} is found in {x}",
    "described_by": "{s} was first described by {x}",
    "creator": "{s} was made by {x}",
    "held_by": "{s} is held by {x}",
    "twin_town": "{s} is twinned with {x}",
}
#: questions whose answer is a name (the linked entry), beside the attribute questions' numbers
RELATION_QUESTIONS = {
    "birthplace": "Where was {x} born?",
    "employer": "Which organisation did {x} work for?",
    "founder": "Who founded {x}?",
    "headquarters": "In which town is {x} headquartered?",
    "habitat": "Where is {x} found?",
    "described_by": "Who first described {x}?",
    "creator": "Who made {x}?",
    "held_by": "Which institution holds {x}?",
    "twin_town": "Which town is twinned with {x}?",
}
NAME_ANSWERS = 0.65  # the share of mined questions asked about a linked entry (a name as the answer)
MIN_KIND_SHARE = 3  # a kind noun fewer entries share ("glassworks") would name the entry alone
_PICTURE_NOUN = {"person": "person", "organisation": "organisation", "place": "place", "species": "species",
                 "artwork": "artwork"}  # fmt: skip


def article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s]


def introduce(question: str, name: str, sentence: str, noun: str) -> str:
    """`question` with `name` introduced by its own sentence (placed before its first mention)
    and referred to as "that <noun>" from then on: one clause per hop, several sentences.
    `noun` is the kind ("foundry") or, where another entry took it, the whole clue."""
    parts = sentences(question)
    first = next((i for i, s in enumerate(parts) if name in s), len(parts) - 1)
    referred = []
    for part in parts:
        part = part.replace(name, f"that {noun}")
        referred.append(part[:1].upper() + part[1:])
    new = sentence[:1].upper() + sentence[1:] + "."
    return " ".join([*referred[:first], new, *referred[first:]])


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
        named = [
            (r, RELATION_QUESTIONS[r])
            for r, s in e.links.items()
            if r in RELATION_QUESTIONS and s in self.kb.entities
        ]
        if named and unit("walk-mine-kind", e.slug) < NAME_ANSWERS:
            relation, template = named[int(len(named) * unit("walk-mine", e.slug))]
            return {"question": template.format(x=e.name), "answer": self.kb.entities[e.links[relation]].name}
        choices = ATTRIBUTE_QUESTIONS[e.type]
        attr, template = choices[int(len(choices) * unit("walk-mine", e.slug))]
        return {"question": template.format(x=e.name), "answer": e.attributes[attr]}

    def _unique(self, p: dict[str, Any], images: list[str], knobs: Knobs, key: str) -> dict[str, Any]:
        e = self._entity(p)
        answer = str(p.get("answer", "")).strip()
        if drawn(knobs.walk.get("generic", 0.0), "walk-generic", key):
            return {"verdict": "generic", "reason": "the answer names a kind of thing"}
        linked = {self.kb.entities[s].name for s in e.links.values() if s in self.kb.entities} if e else set()
        if e is None or answer not in (*e.attributes.values(), *linked):
            return {"verdict": "ambiguous", "reason": "the answer is not stated for this entity"}
        if answer == e.attributes.get(KIND_ATTRIBUTE[e.type]):
            return {"verdict": "generic", "reason": f"'{answer}' is a generic term shared by many entries"}
        return {"verdict": "ok", "reason": "a specific value stated on the page"}

    def _hop(self, p: dict[str, Any], images: list[str], knobs: Knobs, key: str) -> dict[str, Any]:
        cur, nxt = self._entity(p.get("current")), self._entity(p.get("next"))
        question, answer = str(p.get("question", "")), str(p.get("answer", ""))
        if cur is None or nxt is None:
            return {"error": "I do not know these pages"}
        sentence, relation, clue, unique = self.describe(cur, nxt, answer)
        if sentence is None:
            return {"relation": "", "property": "", "question": question, "disambiguates": False}
        rewritten = (
            question
            if drawn(knobs.walk.get("leak", 0.0), "walk-leak", key)
            else introduce(question, cur.name, sentence, self.referent(question, cur, answer, clue))
        )
        return {"relation": relation, "property": clue, "question": rewritten, "disambiguates": unique}

    @cached_property
    def kind_counts(self) -> collections.Counter[str]:
        return collections.Counter(
            e.attributes.get(KIND_ATTRIBUTE[e.type], "") for e in self.kb.entities.values()
        )

    def noun(self, e: Entity, answer: str) -> str:
        """What to call `e`: its kind ("foundry") where enough entries share it, else its type."""
        kind = e.attributes.get(KIND_ATTRIBUTE[e.type], "")
        if kind and kind != answer and self.kind_counts[kind] >= MIN_KIND_SHARE:
            return kind
        return TYPE_NOUN[e.type]

    def referent(self, question: str, e: Entity, answer: str, clue: str) -> str:
        """How later sentences name `e`: "that <kind>", or "that <clue>" where the question
        already says "that <kind>" of another entry (two harbour towns on one chain)."""
        noun = self.noun(e, answer)
        return clue if f"that {noun}".casefold() in question.casefold() else noun

    @staticmethod
    def phrase(e: Entity, prop: str) -> str:
        template, kind = PROPERTY_PHRASES[prop]
        return template.format(v=blur(kind, e.attributes.get(prop, "")))

    def spread(self, e: Entity, prop: str) -> int:
        """How many entries of `e`'s type share its blurred `prop`: the higher, the less it gives away."""
        mine = self.phrase(e, prop)
        return sum(1 for o in self.kb.entities.values() if o.type == e.type and prop in o.attributes
                   and self.phrase(o, prop) == mine)  # fmt: skip

    def describe(self, cur: Entity, nxt: Entity, answer: str) -> tuple[str | None, str, str, bool]:
        """(the sentence that introduces `cur` through `nxt`, relation, clue, whether it is unique).

        One clause per hop: "A botanist born in the late 1810s was born in Thystu." The clue
        (kind noun + one blurred property) narrows the field; the relation to `nxt` singles it out.
        """
        props = [a for a, v in cur.attributes.items() if a in PROPERTY_PHRASES and v != answer]
        props.sort(key=lambda a: -self.spread(cur, a))  # the least telling property first
        noun = self.noun(cur, answer)
        back = next((r for r, s in nxt.links.items() if s == cur.slug and r in RELATION_SENTENCES), None)
        if back is not None:  # nxt's page names cur as its <relation>: unique by itself
            clue = f"{noun} {self.phrase(cur, props[0])}" if props else noun
            sentence = RELATION_SENTENCES[back].format(s=nxt.name, x=f"{article(clue)} {clue}")
            return sentence, RELATION_NOUN[back] + " of", clue, True
        forward = next((r for r, s in cur.links.items() if s == nxt.slug and r in RELATION_SENTENCES), None)
        if forward is None:
            return None, "", "", False
        same = [
            e for e in self.kb.entities.values()
            if e.type == cur.type and e.links.get(forward) == nxt.slug
        ]  # fmt: skip
        verb = RELATION_SENTENCES[forward]  # "founded in the 1850s was founded by" reads badly
        for prop in (a for a in props if PROPERTY_PHRASES[a][0].split()[0] not in verb):
            mine = self.phrase(cur, prop)
            if sum(1 for e in same if prop in e.attributes and self.phrase(e, prop) == mine) == 1:
                clue = f"{noun} {mine}"
                sentence = RELATION_SENTENCES[forward].format(s=f"{article(clue)} {clue}", x=nxt.name)
                return sentence, RELATION_NOUN[forward], clue, True
        sentence = RELATION_SENTENCES[forward].format(s=f"{article(noun)} {noun}", x=nxt.name)
        return sentence, RELATION_NOUN[forward], noun, len(same) == 1

    def _visual(self, p: dict[str, Any], images: list[str], knobs: Knobs, key: str) -> dict[str, Any]:
        e = self._entity(p.get("entity"))
        question = str(p.get("question", ""))
        if e is None or not images:
            return {"depicts": False, "question": question}
        if not self._shows(e, images[0]):
            return {"depicts": False, "question": question}
        noun = f"the {_PICTURE_NOUN[e.type]} whose emblem is shown in this picture"
        shown = " ".join(s[:1].upper() + s[1:] for s in sentences(question.replace(e.name, noun)))
        return {"depicts": True, "question": shown}

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
