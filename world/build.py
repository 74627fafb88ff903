"""Build an offline world on disk, deterministically: same seed, same bytes.

Layout of WORLD/:
    world.json               manifest: seed, counts, content hash over every other file
    entities.jsonl           the knowledge graph (one entity per line)
    tasks.jsonl              Task records; image paths relative to WORLD
    corpus/pages.jsonl       {"url", "title", "text"} per encyclopedia page (text-search corpus)
    corpus/images.jsonl      {"path" (relative to corpus/), "page_url", "title"} (image-search corpus)
    corpus/images/<slug>.png entity emblems
    corpus/html/<slug>.html  encyclopedia pages as served
    scenes/scene_<i>.png     2560x2048 scenes for perception and interleaved tasks
    photos/<slug>.png        whole-image 'photos' of emblems for search and multi-hop tasks
    signatures.json + .npy   each task image's 32x32 grey thumbnail (uint8, in the .json's path
                             order): the oracle tells tasks that share a question apart by image
                             without decoding a 5 MP scene per candidate
The build writes into a temporary sibling folder and renames it into place, so a crash never
leaves a half-built world that `is_built` would accept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

import world.tasks as T
from pipeline.phash import image_phash
from pipeline.schema import Task
from world.images import draw_emblem, search_photo
from world.kg import Entity, generate_kg
from world.pages import page_text, page_url, render_html, render_index, reverse_links
from world.scenes import PLATE_KINDS, build_scene, new_code
from world.vision import SIGNATURE_SIDE, thumbnail_signature

#: 2: infobox links show their URL; multi-hop follows links by URL, up to 4 hops;
#: 3: task-image signatures (signatures.json + signatures.npy)
WORLD_VERSION = 3

DEFAULT_ENTITIES = 300
DEFAULT_TASKS = 200
#: share of tasks per category
MIX = {"perception": 0.3, "search": 0.2, "interleaved": 0.25, "multihop": 0.25}
HOPS = (2, 2, 3, 3, 4)  # links per multi-hop task, drawn uniformly from this tuple
PER_SCENE = 4  # plates and emblems per scene
_PNG = {"format": "PNG", "compress_level": 6}


@functools.cache
def builder_fingerprint() -> str:
    """A digest of the world package's code: a world built by other code is rebuilt.

    The version number alone missed changes (a checkout whose world was built before the
    question phrasings existed kept serving the old tasks under the same version). Any edit to
    `world/` rebuilds it, the oracle's included: about 15 s, against runs on stale tasks.
    """
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **_PNG)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows), encoding="utf-8"
    )


def _counts(total: int) -> dict[str, int]:
    counts = {k: int(total * v) for k, v in MIX.items()}
    for key in list(MIX)[: total - sum(counts.values())]:
        counts[key] += 1
    return counts


def _clutter_words(rng: random.Random) -> list[str]:
    letters = "abcdefghiklmnoprstuvy"
    return ["".join(rng.choices(letters, k=rng.randint(3, 9))).capitalize() for _ in range(200)]


def _unique_clue(entity: Entity, kg: list[Entity]) -> bool:
    clue = T.start_clue(entity)[0]
    return sum(1 for e in kg if e.type == entity.type and T.start_clue(e)[0] == clue) == 1


def _chain(
    rng: random.Random, start: Entity, hops: int, by_slug: dict[str, Entity]
) -> list[tuple[str | None, Entity]] | None:
    """A walk of `hops` links from `start` that never revisits an entity."""
    chain: list[tuple[str | None, Entity]] = [(None, start)]
    for _ in range(hops):
        current = chain[-1][1]
        options = sorted((r, s) for r, s in current.links.items() if s not in {e.slug for _, e in chain})
        if not options:
            return None
        relation, slug = rng.choice(options)
        chain.append((relation, by_slug[slug]))
    return chain


class _Phash:
    """Checks that an emblem crop's nearest perceptual hash is its own entity, by a margin."""

    def __init__(self, emblems: dict[str, Image.Image]) -> None:
        self.hashes = {slug: image_phash(img) for slug, img in emblems.items()}

    def distinct(self, crop: Image.Image, slug: str, margin: int = 6) -> bool:
        h = image_phash(crop)
        own = (h ^ self.hashes[slug]).bit_count()
        return all(own + margin <= (h ^ other).bit_count() for s, other in self.hashes.items() if s != slug)


def build_world(
    out: Path,
    seed: int = 0,
    entities: int = DEFAULT_ENTITIES,
    tasks: int = DEFAULT_TASKS,
    progress: bool = True,
) -> Path:
    """Build the world into `out` (replaced if present); returns `out`."""
    out = Path(out)
    start = time.perf_counter()
    tmp = out.parent / f".{out.name}.building"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    kg_list = generate_kg(seed, entities)
    kg = {e.slug: e for e in kg_list}
    reverse = reverse_links(kg)
    rng = random.Random(f"tasks-{seed}")

    # corpus: emblems, pages
    emblems: dict[str, Image.Image] = {}
    page_rows, image_rows = [], []
    for e in tqdm(kg_list, desc="pages", disable=not progress, leave=False):
        emblems[e.slug] = draw_emblem(e.seed)
        rel = f"images/{e.slug}.png"
        _save(emblems[e.slug], tmp / "corpus" / rel)
        html_path = tmp / "corpus" / "html" / f"{e.slug}.html"
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(e, kg, reverse, rel), encoding="utf-8")
        page_rows.append({"url": page_url(e.slug), "title": e.name, "text": page_text(e, kg, reverse)})
        image_rows.append({"path": rel, "page_url": page_url(e.slug), "title": e.name})
    (tmp / "corpus" / "html" / "index.html").write_text(render_index(kg), encoding="utf-8")
    _write_jsonl(tmp / "corpus" / "pages.jsonl", page_rows)
    _write_jsonl(tmp / "corpus" / "images.jsonl", image_rows)
    _write_jsonl(tmp / "entities.jsonl", [e.to_json() for e in kg_list])

    counts = _counts(tasks)
    out_tasks: list[Task] = []
    phash = _Phash(emblems)
    photo_done: set[str] = set()

    signatures: dict[str, np.ndarray] = {}  # of every image a task may show, made while in memory

    def photo(e: Entity) -> str:
        rel = f"photos/{e.slug}.png"
        if e.slug not in photo_done:
            image = search_photo(emblems[e.slug], e.seed)
            _save(image, tmp / rel)
            signatures[rel] = thumbnail_signature(image)
            photo_done.add(e.slug)
        return rel

    # scenes: plates (perception) and framed emblems (interleaved)
    n_scenes = max(1, math.ceil(max(counts["perception"], counts["interleaved"]) / PER_SCENE))
    words, codes = _clutter_words(rng), set()
    perception, interleaved = [], []
    pool = sorted(kg)
    for index in tqdm(range(n_scenes), desc="scenes", disable=not progress, leave=False):
        plates = [
            (new_code(rng, codes), PLATE_KINDS[(index * PER_SCENE + k) % len(PLATE_KINDS)])
            for k in range(PER_SCENE)
        ]
        chosen = [kg[s] for s in rng.sample(pool, PER_SCENE)]
        name = f"scene_{index:03d}"
        image, layout = build_scene(name, seed, plates, chosen, words)
        rel = f"scenes/{name}.png"
        _save(image, tmp / rel)
        signatures[rel] = thumbnail_signature(image)
        for k, plate in enumerate(layout.plates):
            perception.append(T.perception_task(rel, plate, f"{index:03d}-{k}"))
        for emblem in layout.emblems:
            crop = image.crop(tuple(round(v) for v in emblem.box))
            if phash.distinct(crop, emblem.slug):
                interleaved.append(T.interleaved_task(rel, emblem, kg[emblem.slug], rng))
    out_tasks += perception[: counts["perception"]] + interleaved[: counts["interleaved"]]

    # search: whole-image reverse search of an emblem photo
    searchable = [
        s for s in pool if phash.distinct(search_photo(emblems[s], kg[s].seed).resize((256, 256)), s)
    ]
    for slug in rng.sample(searchable, min(counts["search"], len(searchable))):
        out_tasks.append(T.search_task(photo(kg[slug]), kg[slug], rng))

    # multi-hop: 2 to 4 links, starting from an indirect description or from an emblem photo
    made, attempts = 0, 0
    seen_ids: set[str] = set()
    while made < counts["multihop"] and attempts < 50 * max(1, counts["multihop"]):
        attempts += 1
        start_entity = kg[rng.choice(pool)]
        visual = rng.random() < 0.4
        if visual and start_entity.slug not in searchable:
            continue
        if not visual and not _unique_clue(start_entity, kg_list):
            continue
        chain = _chain(rng, start_entity, rng.choice(HOPS), kg)
        if chain is None:
            continue
        last = chain[-1][1]
        attr, template = rng.choice(T.ATTRIBUTE_QUESTIONS[last.type])
        task = T.multihop_task(chain, attr, photo(start_entity) if visual else None, template)
        if task.task_id in seen_ids:
            continue
        seen_ids.add(task.task_id)
        out_tasks.append(task)
        made += 1

    _write_jsonl(tmp / "tasks.jsonl", [t.model_dump() for t in out_tasks])
    _write_signatures(tmp, signatures, out_tasks)
    by_category = {c: sum(1 for t in out_tasks if t.category == c) for c in MIX}
    manifest = {
        "version": WORLD_VERSION,
        "builder": builder_fingerprint(),
        "seed": seed,
        "entities": len(kg_list),
        "tasks": len(out_tasks),
        "categories": by_category,
        "scenes": n_scenes,
        "content_hash": _content_hash(tmp),
    }
    (tmp / "world.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    if progress:
        print(
            f"world: {len(kg_list)} entities, {len(out_tasks)} tasks {by_category}, {n_scenes} scenes "
            f"in {time.perf_counter() - start:.1f}s -> {out}"
        )
    return out


def _write_signatures(root: Path, signatures: dict[str, np.ndarray], tasks: list[Task]) -> None:
    """Thumbnails of the tasks' first images (np.save, not npz: same seed, same bytes)."""
    paths = sorted({t.images[0] for t in tasks if t.images})
    (root / "signatures.json").write_text(json.dumps({"paths": paths}) + "\n", encoding="utf-8")
    stacked = (
        np.stack([signatures[p] for p in paths])
        if paths
        else np.zeros((0, SIGNATURE_SIDE, SIGNATURE_SIDE), np.uint8)
    )
    np.save(root / "signatures.npy", stacked, allow_pickle=False)


def load_signatures(world_dir: Path) -> dict[str, np.ndarray]:
    """The build's task-image thumbnails by path; empty for a world built before version 3."""
    world_dir = Path(world_dir)
    try:
        paths = json.loads((world_dir / "signatures.json").read_text(encoding="utf-8"))["paths"]
        stacked = np.load(world_dir / "signatures.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError):
        return {}
    if len(paths) != len(stacked):
        return {}
    return dict(zip(paths, stacked, strict=True))


def _content_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "world.json"):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def is_built(world_dir: Path, **expected: int) -> bool:
    """A finished build (manifest and tasks present: the build renames into place at the end)
    of this builder's version and code and, when given, of the expected `seed`, `entities` and
    `tasks`."""
    world_dir = Path(world_dir)
    if not ((world_dir / "world.json").is_file() and (world_dir / "tasks.jsonl").is_file()):
        return False
    if not expected:
        return True
    try:
        built = manifest(world_dir)
    except ValueError:
        return False
    wanted = {"version": WORLD_VERSION, "builder": builder_fingerprint(), **expected}
    return all(built.get(key) == value for key, value in wanted.items())


def manifest(world_dir: Path) -> dict:
    return json.loads((Path(world_dir) / "world.json").read_text(encoding="utf-8"))


def load_tasks(world_dir: Path) -> list[Task]:
    """The world's tasks with `images` as absolute file paths."""
    world_dir = Path(world_dir).resolve()
    if not is_built(world_dir):
        raise FileNotFoundError(
            f"{world_dir} is not a built world; run `trajforge world build --out {world_dir}`"
        )
    out = []
    for line in (world_dir / "tasks.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            task = Task.model_validate_json(line)
            task.images = [str(world_dir / rel) for rel in task.images]
            out.append(task)
    return out


def load_entities(world_dir: Path) -> dict[str, Entity]:
    rows = (Path(world_dir) / "entities.jsonl").read_text(encoding="utf-8").splitlines()
    return {e.slug: e for e in (Entity.from_json(json.loads(r)) for r in rows if r.strip())}
