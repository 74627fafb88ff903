"""The world's knowledge graph: fictional, typed entities with attributes and links.

Names are built from syllables, so no teacher can answer from memory; every choice comes from
one seeded `random.Random`, so the same seed always yields the same graph. Links are typed
relations (an artwork's creator, an organisation's headquarters, ...), which is what multi-hop
questions walk over.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

TYPES = ("person", "organisation", "place", "species", "artwork")
#: Share of each type in the graph (people and places are linked to most often).
TYPE_WEIGHTS = {"person": 0.26, "organisation": 0.2, "place": 0.22, "species": 0.14, "artwork": 0.18}
#: relation -> (source type, target type)
RELATIONS: dict[str, tuple[str, str]] = {
    "birthplace": ("person", "place"),
    "employer": ("person", "organisation"),
    "founder": ("organisation", "person"),
    "headquarters": ("organisation", "place"),
    "habitat": ("species", "place"),
    "described_by": ("species", "person"),
    "creator": ("artwork", "person"),
    "held_by": ("artwork", "organisation"),
    "twin_town": ("place", "place"),
}

_ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "kr",
    "st",
    "th",
    "vr",
    "gl",
    "sk",
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "k", "m", "nd", "sk", "rn"]

OCCUPATIONS = [
    "cartographer",
    "glassblower",
    "astronomer",
    "botanist",
    "engraver",
    "shipwright",
    "composer",
    "archivist",
    "clockmaker",
    "painter",
    "sculptor",
    "naturalist",
    "weaver",
    "chemist",
    "surveyor",
]
INDUSTRIES = [
    "glassworks",
    "shipyard",
    "observatory",
    "printing house",
    "textile mill",
    "brewery",
    "foundry",
    "museum",
    "academy",
    "trading company",
    "porcelain works",
    "telegraph company",
    "library",
]
PLACE_KINDS = ["city", "harbour town", "mountain village", "river town", "island town", "market town"]
SPECIES_KINDS = [
    "beetle",
    "orchid",
    "finch",
    "moth",
    "lichen",
    "salamander",
    "fern",
    "heron",
    "tetra",
    "cactus",
]
MEDIA = ["oil painting", "bronze sculpture", "tapestry", "mosaic", "marble relief", "woodcut", "fresco"]
ORG_SUFFIX = {
    "glassworks": "Glassworks",
    "shipyard": "Shipyard",
    "observatory": "Observatory",
    "printing house": "Press",
    "textile mill": "Mills",
    "brewery": "Brewery",
    "foundry": "Foundry",
    "museum": "Museum",
    "academy": "Academy",
    "trading company": "Trading Company",
    "porcelain works": "Porcelain",
    "telegraph company": "Telegraph",
    "library": "Library",
}
ARTWORK_NOUNS = [
    "Harbour",
    "Lantern",
    "Orchard",
    "Tide",
    "Bell",
    "Comet",
    "Loom",
    "Gate",
    "Heron",
    "Ember",
    "Meadow",
    "Tower",
    "Anchor",
    "Compass",
    "Mirror",
    "Garden",
]


@dataclass
class Entity:
    """One node: a name, a type, literal attributes and typed links to other entities."""

    slug: str
    name: str
    type: str
    attributes: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # relation -> target slug
    seed: int = 0  # drives the entity's image

    def to_json(self) -> dict:
        return {
            "slug": self.slug,
            "name": self.name,
            "type": self.type,
            "attributes": self.attributes,
            "links": self.links,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: dict) -> Entity:
        return cls(**data)


def slug_for(name: str) -> str:
    """Wikipedia-style page slug: spaces become underscores."""
    return name.replace(" ", "_")


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


class _Names:
    """Unique fictional names (a name never repeats within one world)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set()

    def make(self, kind: str, attrs: dict[str, str]) -> str:
        for _ in range(1000):
            if kind == "person":
                name = f"{_word(self.rng, 2)} {_word(self.rng, self.rng.choice((2, 3)))}"
            elif kind == "organisation":
                name = f"{_word(self.rng, 2)} {ORG_SUFFIX[attrs['industry']]}"
            elif kind == "place":
                name = _word(self.rng, self.rng.choice((2, 3)))
            elif kind == "species":
                name = f"{_word(self.rng, 2)} {attrs['kind']}"
            else:
                name = f"The {self.rng.choice(ARTWORK_NOUNS)} of {_word(self.rng, 2)}"
            if name not in self.used:
                self.used.add(name)
                return name
        raise RuntimeError("could not find a fresh name; raise the syllable inventory")


def _attributes(rng: random.Random, kind: str) -> dict[str, str]:
    if kind == "person":
        return {"born": str(rng.randint(1690, 1960)), "occupation": rng.choice(OCCUPATIONS)}
    if kind == "organisation":
        return {
            "founded": str(rng.randint(1650, 1990)),
            "industry": rng.choice(INDUSTRIES),
            "employees": str(rng.randint(12, 9000)),
        }
    if kind == "place":
        return {
            "kind": rng.choice(PLACE_KINDS),
            "founded": str(rng.randint(900, 1900)),
            "population": str(rng.randint(800, 480000)),
        }
    if kind == "species":
        return {
            "kind": rng.choice(SPECIES_KINDS),
            "described": str(rng.randint(1750, 1990)),
            "length_mm": str(rng.randint(3, 900)),
        }
    return {
        "medium": rng.choice(MEDIA),
        "year": str(rng.randint(1600, 1990)),
        "height_cm": str(rng.randint(20, 600)),
    }


def generate_kg(seed: int, n: int) -> list[Entity]:
    """`n` entities (at least one of each type), linked by every relation in RELATIONS."""
    if n < 2 * len(TYPES):
        raise ValueError(f"a world needs at least {2 * len(TYPES)} entities, got {n}")
    rng = random.Random(f"kg-{seed}")
    counts = {t: max(2, round(n * w)) for t, w in TYPE_WEIGHTS.items()}
    counts["person"] += n - sum(counts.values())
    names = _Names(rng)
    entities: list[Entity] = []
    for kind in TYPES:
        for _ in range(counts[kind]):
            attrs = _attributes(rng, kind)
            name = names.make(kind, attrs)
            entities.append(
                Entity(slug=slug_for(name), name=name, type=kind, attributes=attrs, seed=rng.getrandbits(32))
            )
    by_type: dict[str, list[Entity]] = {t: [e for e in entities if e.type == t] for t in TYPES}
    for entity in entities:
        for relation, (source, target) in RELATIONS.items():
            if entity.type != source:
                continue
            choices = [e for e in by_type[target] if e.slug != entity.slug]
            entity.links[relation] = rng.choice(choices).slug
    return entities
