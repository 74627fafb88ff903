"""Near-duplicate questions and images across the kept set.

Questions: datasketch MinHash (64 permutations, fixed seed) over word 3-shingles of the
normalised question, inserted into a datasketch `MinHashLSH` banded 16 x 4 for candidate pairs,
then the estimated Jaccard similarity against a threshold. `MinHashLSH.query` returns every member
of every bucket a question falls in, so a few thousand templated questions sharing buckets would
cost O(n^2) comparisons; instead each bucket's members are compared with its best-ranked member
only (vectorised over the signatures), O(n), and pairs that member misses are still joined
through the other buckets they share. Images: a 64-bit perceptual hash (`pipeline.phash`) of the
first task image; candidates share one of 8 byte-bands (any pair within Hamming distance 7 does,
by pigeonhole), then the exact distance is checked. Items arrive ranked best first; each group
keeps its best member, so the outcome is deterministic.

Against the own MinHash and banding it replaced (`bench/bench_dedup.py`): 1.4-1.7x its CPU time
on this step (datasketch inserts band by band in Python; ~0.1 ms a question, about 1 % of a
filter run). Adopted anyway: a kept library instead of a look-alike, and the decisions are as
good, differing only at the threshold margin (exact Jaccard 0.6-0.85), both ways (README, Filter).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

from pipeline.answers import normalize_answer
from pipeline.phash import image_phash

NUM_PERM, BANDS, SEED = 64, 16, 1


@dataclass(frozen=True)
class DedupItem:
    key: str
    question: str
    image: str | None  # first task image ref


def shingles(text: str, k: int = 3) -> set[str]:
    words = normalize_answer(text).split()
    if len(words) <= k:
        return {" ".join(words)}
    return {" ".join(words[i : i + k]) for i in range(len(words) - k + 1)}


def _union(parent: list[int], i: int, j: int) -> None:
    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ri, rj = find(i), find(j)
    if ri != rj:
        parent[max(ri, rj)] = min(ri, rj)  # the better-ranked (lower index) item stays root


def _root(parent: list[int], x: int) -> int:
    while parent[x] != x:
        x = parent[x]
    return x


def question_pairs(items: Sequence[DedupItem], threshold: float) -> set[tuple[int, int]]:
    """Pairs (bucket head, member) whose estimated Jaccard similarity reaches `threshold`."""
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED)  # one, cleared per question: no copy each
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, NUM_PERM // BANDS))
    signatures = np.empty((len(items), NUM_PERM), dtype=minhash.hashvalues.dtype)
    for index, item in enumerate(items):
        minhash.clear()
        minhash.update_batch([s.encode() for s in shingles(item.question)])
        lsh.insert(index, minhash, check_duplication=False)  # keeps the band hashes, not `minhash`
        signatures[index] = minhash.hashvalues
    pairs: set[tuple[int, int]] = set()
    for table in lsh.hashtables:
        for bucket in table:  # a datasketch storage iterates its bucket keys
            members = table.get(bucket)
            if len(members) < 2:
                continue
            head, *others = sorted(members)
            rest = np.asarray(others)
            similar = rest[(signatures[rest] == signatures[head]).mean(axis=1) >= threshold]
            pairs.update((head, int(j)) for j in similar)
    return pairs


def image_pairs(hashes: Sequence[int | None], distance: int) -> set[tuple[int, int]]:
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, value in enumerate(hashes):
        if value is not None:
            for band in range(8):
                buckets[(band, (value >> (8 * band)) & 0xFF)].append(index)
    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        for a_pos, i in enumerate(members):
            for j in members[a_pos + 1 :]:
                if bin(hashes[i] ^ hashes[j]).count("1") <= distance:  # type: ignore[operator]
                    pairs.add((i, j))
    return pairs


def near_duplicates(
    items: Sequence[DedupItem],
    *,
    question_similarity: float,
    image_distance: int,
    require_both: bool,
    image_hash: Callable[[str], int | None],
) -> dict[str, str]:
    """key -> key of the better-ranked item it duplicates (items must be ranked best first)."""
    use_q, use_i = question_similarity > 0, image_distance >= 0
    if not items or not (use_q or use_i):
        return {}
    q = question_pairs(items, question_similarity) if use_q else set()
    hashes = [image_hash(item.image) if item.image else None for item in items] if use_i else []
    if require_both and use_q and use_i:

        def same_image(i: int, j: int) -> bool:
            if hashes[i] is None or hashes[j] is None:
                return hashes[i] is None and hashes[j] is None
            return bin(hashes[i] ^ hashes[j]).count("1") <= image_distance  # type: ignore[operator]

        pairs = {p for p in q if same_image(*p)}
    else:
        pairs = q | (image_pairs(hashes, image_distance) if use_i else set())
    parent = list(range(len(items)))
    for i, j in sorted(pairs):
        _union(parent, i, j)
    return {items[i].key: items[_root(parent, i)].key for i in range(len(items)) if _root(parent, i) != i}


def phash(image) -> int:
    """64-bit perceptual hash of a decoded image (`pipeline.phash`, shared with image search)."""
    return image_phash(image)
