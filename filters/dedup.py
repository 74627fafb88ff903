"""Near-duplicate questions and images across the kept set.

Questions: MinHash over word 3-shingles of the normalised question, LSH banding for candidate
pairs, then the estimated Jaccard similarity against a threshold. Images: a 64-bit perceptual
hash (`pipeline.phash`) of the first task image; candidates share one of 8 byte-bands (any pair
within Hamming distance 7 does, by pigeonhole), then the exact distance is checked. Items arrive
ranked best first; each group keeps its best member, so the outcome is deterministic.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from filters.answer import normalize_answer
from pipeline.phash import image_phash

_PRIME = np.uint64((1 << 61) - 1)
NUM_PERM, BANDS = 64, 16


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


class MinHasher:
    """Fixed-seed MinHash: the same text always gets the same signature."""

    def __init__(self, num_perm: int = NUM_PERM, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, (1 << 61) - 1, size=num_perm, dtype=np.uint64)

    def signature(self, text: str) -> np.ndarray:
        values = np.array(
            [
                int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little")
                for s in shingles(text)
            ],
            dtype=np.uint64,
        )
        with np.errstate(over="ignore"):
            hashed = (values[:, None] * self.a[None, :] + self.b[None, :]) % _PRIME
        return hashed.min(axis=0)


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
    """Pairs whose estimated Jaccard similarity reaches `threshold`.

    Within an LSH bucket each member is compared with the bucket's first member only (vectorised),
    so templated questions that all share buckets cost O(n), not O(n^2); pairs the first member
    misses are still joined through the other buckets they share.
    """
    hasher = MinHasher()
    signatures = np.stack([hasher.signature(item.question) for item in items])
    rows = NUM_PERM // BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for index, sig in enumerate(signatures):
        for band in range(BANDS):
            buckets[(band, sig[band * rows : (band + 1) * rows].tobytes())].append(index)
    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        if len(members) < 2:
            continue
        head, rest = members[0], np.asarray(members[1:])
        similar = (signatures[rest] == signatures[head]).mean(axis=1) >= threshold
        pairs.update((head, int(j)) for j in rest[similar])
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
