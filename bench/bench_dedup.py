"""Dedup benchmark: `filters/dedup.py` against its version at a baseline commit, in one run.

Both versions get the same items and settings; the bench prints whether their decisions (which
item duplicates which) agree, every item they disagree on, and the process CPU time of each
(best of --repeat), with the ratio new/old. The baseline is read from git (`git show
REV:filters/dedup.py`), so no frozen copy lives in the tree; the default REV is the last commit
with the own MinHash/LSH, before datasketch replaced it.

Item sets:
- templated: --n questions from a few templates ("In what year was the organisation whose emblem
  is X founded?"), a third of them re-worded near-duplicates of another, each with an image hash
  (half shared within a group, half not), so thousands of questions share LSH buckets: the case
  where comparing every bucket member with every other would cost O(n^2);
- run: with --run DIR, every raw trajectory of that run (question + first task image, ranked
  by a stable hash of the id), with the filter's default dedup settings.

    python bench/bench_dedup.py [--n 6000] [--run runs/demo] [--baseline REV] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from filters.dedup import DedupItem, phash, shingles  # noqa: E402
from pipeline.config import FilterConfig  # noqa: E402
from pipeline.schema import stable_hash  # noqa: E402

#: the last commit whose filters/dedup.py has the own MinHash and banding
BASELINE = "e159e980f870da95773901ebd2ede786e5d24344"

TEMPLATES = (
    "In what year was the organisation whose emblem is {x} founded?",
    "Who founded the company whose logo is shown on the {x} sign in this picture?",
    "What is the name of the river that flows through the city where {x} was born?",
    "How many floors does the building next to the {x} statue have?",
)
REWORDS = (("picture", "photo"), ("founded", "established"), ("name", "full name"), ("How many", "Count the"))


def load_baseline(rev: str) -> ModuleType:
    """`filters/dedup.py` as it was at `rev`, imported as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:filters/dedup.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "dedup_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("dedup_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def templated(n: int, seed: int = 0) -> tuple[list[DedupItem], dict[str, int | None]]:
    """Templated questions, a third of them re-worded copies of an earlier one."""
    rng = random.Random(seed)
    items: list[DedupItem] = []
    hashes: dict[str, int | None] = {}
    for i in range(n):
        key = f"q{i:06d}"
        if items and i % 3 == 2:
            source = items[rng.randrange(len(items))]
            old, new = rng.choice(REWORDS)
            question = source.question.replace(old, new)
            near = hashes[source.image] ^ (1 << rng.randrange(64)) if source.image else None  # type: ignore[operator]
            hashes[key] = near if rng.random() < 0.5 else rng.getrandbits(64)
        else:
            filler = " ".join(f"w{rng.randrange(5000)}" for _ in range(rng.randint(1, 3)))
            question = rng.choice(TEMPLATES).format(x=filler)
            hashes[key] = rng.getrandbits(64)
        items.append(DedupItem(key, question, key))
    return items, hashes


def from_run(run: Path) -> tuple[list[DedupItem], Callable[[str], int | None]]:
    from filters.run_checks import iter_raw
    from pipeline.store import RunStore

    store = RunStore(run)
    trajectories = [t for batch in iter_raw(store) for t in batch]
    trajectories.sort(key=lambda t: stable_hash(t.trajectory_id))
    items = [DedupItem(t.trajectory_id, t.question, t.images[0] if t.images else None) for t in trajectories]
    cache: dict[str, int | None] = {}
    for item in items:  # hashed once up front: the bench times dedup, not image decoding
        if item.image and item.image not in cache:
            cache[item.image] = phash(store.images.open(item.image)) if store.images.has(item.image) else None
    return items, cache.get


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(module: ModuleType, items: Sequence[DedupItem], cfg: FilterConfig, image_hash, repeat: int):
    best, result = float("inf"), {}
    for _ in range(repeat):
        start = cpu_s()
        result = module.near_duplicates(
            items,
            question_similarity=cfg.dedup_question_similarity,
            image_distance=cfg.dedup_image_distance,
            require_both=cfg.dedup_require_both,
            image_hash=image_hash,
        )
        best = min(best, cpu_s() - start)
    return result, best


def compare(name: str, items, cfg: FilterConfig, image_hash, old: ModuleType, new: ModuleType, repeat: int):
    old_dupes, old_s = timed(old, items, cfg, image_hash, repeat)
    new_dupes, new_s = timed(new, items, cfg, image_hash, repeat)
    differ = sorted(k for k in {*old_dupes, *new_dupes} if old_dupes.get(k) != new_dupes.get(k))
    print(
        f"{name} ({len(items)} items, similarity {cfg.dedup_question_similarity}, image distance "
        f"{cfg.dedup_image_distance}, require both {cfg.dedup_require_both}): dropped old "
        f"{len(old_dupes)} new {len(new_dupes)}; kept sets {'equal' if set(old_dupes) == set(new_dupes) else 'DIFFER'}, "
        f"{len(differ)} decisions differ; CPU old {old_s:.3f} s new {new_s:.3f} s, new/old {new_s / old_s:.2f}"
    )
    if cfg.dedup_question_similarity > 0:
        for label, module in (("old", old), ("new", new)):
            found = module.question_pairs(items, cfg.dedup_question_similarity)
            true = sum(exact_jaccard(items[i], items[j]) >= cfg.dedup_question_similarity for i, j in found)
            print(
                f"  {label}: {len(found)} question pairs, {true} of them at or over the threshold by exact Jaccard"
            )
    by_key = {item.key: item for item in items}
    for key in differ[:8]:
        was, now = old_dupes.get(key), new_dupes.get(key)
        print(
            f"  {key}: old -> {was} (exact Jaccard {_exact(by_key, key, was)}), "
            f"new -> {now} (exact Jaccard {_exact(by_key, key, now)})"
        )


def exact_jaccard(a: DedupItem, b: DedupItem) -> float:
    x, y = shingles(a.question), shingles(b.question)
    return len(x & y) / len(x | y)


def _exact(by_key: dict[str, DedupItem], key: str, other: str | None) -> str:
    return "-" if other is None else f"{exact_jaccard(by_key[key], by_key[other]):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000, help="templated questions")
    parser.add_argument("--run", type=Path, help="also compare on every raw trajectory of this run")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old filters/dedup.py")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import filters.dedup as new

    old = load_baseline(args.baseline)
    print(f"baseline {args.baseline[:12]}; load {Path('/proc/loadavg').read_text().split()[:3]}")
    items, hashes = templated(args.n)
    for cfg in (
        FilterConfig(),
        FilterConfig(dedup_require_both=False),
        FilterConfig(dedup_image_distance=-1),
    ):
        compare("templated", items, cfg, hashes.get, old, new, args.repeat)
    if args.run:
        run_items, image_hash = from_run(args.run)
        compare(f"run {args.run}", run_items, FilterConfig(), image_hash, old, new, args.repeat)


if __name__ == "__main__":
    main()
