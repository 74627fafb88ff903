"""Radius search over 64-bit hashes: multi-index hashing (Norouzi et al., CVPR 2012), vectorised.

A query issues tens of thousands of window hashes and the corpus holds one hash per image, so the
all-pairs popcount grows as windows x corpus. Multi-index hashing splits each hash into `m`
disjoint 16-bit chunks; by the pigeonhole principle two hashes within distance R agree within
floor(R / m) bits on at least one chunk. A `HammingTable` sorts its hashes by each chunk (bucket
offsets over all 2^16 values); a probe looks up its chunk values and their neighbours within
floor(R / m) bits, and only those candidates get an exact XOR + popcount. The result is exact:
the same pairs as brute force.

`min_distances` puts the table on the larger side: the corpus (prebuilt once) when it outnumbers
the query's windows, else the windows (built per query, a few argsorts), so the probes, whose
count is the smaller side times the neighbourhood, stay cheap.
"""

from __future__ import annotations

from functools import cache

import numpy as np

NO_MATCH = 65  # a distance larger than any 64-bit Hamming distance
CHUNK_BITS = 16
CHUNKS = 64 // CHUNK_BITS


def popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values)


@cache
def flip_masks(radius: int) -> np.ndarray:
    """All CHUNK_BITS-bit masks with at most `radius` bits set (a probe's neighbourhood)."""
    values = np.arange(1 << CHUNK_BITS, dtype=np.uint64)
    return values[popcount(values) <= radius].astype(np.int64)


def chunk(values: np.ndarray, number: int) -> np.ndarray:
    shift = np.uint64(number * CHUNK_BITS)
    return ((values >> shift) & np.uint64((1 << CHUNK_BITS) - 1)).astype(np.int64)


class HammingTable:
    """Hashes bucketed by each 16-bit chunk, for exact radius-R pair search."""

    def __init__(self, hashes: np.ndarray, radius: int) -> None:
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.radius = radius
        self.masks = flip_masks(radius // CHUNKS)
        self.buckets = []  # per chunk: (rows sorted by chunk value, offsets of each value)
        for number in range(CHUNKS):
            keys = chunk(self.hashes, number)
            offsets = np.zeros((1 << CHUNK_BITS) + 1, dtype=np.int64)
            np.cumsum(np.bincount(keys, minlength=1 << CHUNK_BITS), out=offsets[1:])
            self.buckets.append((np.argsort(keys, kind="stable"), offsets))

    def __len__(self) -> int:
        return len(self.hashes)

    def pairs(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probe row, table row, distance) of every pair within `radius` (a pair may repeat)."""
        probe_rows, table_rows = [], []
        for number, (order, offsets) in enumerate(self.buckets):
            keys = (chunk(probes, number)[:, None] ^ self.masks[None, :]).ravel()
            starts, counts = offsets[keys], offsets[keys + 1] - offsets[keys]
            hit = np.flatnonzero(counts)
            if len(hit) == 0:
                continue
            starts, counts = starts[hit], counts[hit]
            # rows of every candidate: each bucket's start repeated, plus 0..count-1
            ends = np.cumsum(counts)
            within = np.arange(int(ends[-1]), dtype=np.int64) - np.repeat(ends - counts, counts)
            table_rows.append(order[np.repeat(starts, counts) + within])
            probe_rows.append(np.repeat(hit // len(self.masks), counts))
        if not table_rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.uint8)
        probe_rows, table_rows = np.concatenate(probe_rows), np.concatenate(table_rows)
        distances = popcount(probes[probe_rows] ^ self.hashes[table_rows])
        keep = distances <= self.radius
        return probe_rows[keep], table_rows[keep], distances[keep]


def search_cost(table_size: int, probes: int, radius: int) -> float:
    """Rough work of `pairs`: bucket lookups plus the candidates of uniformly filled buckets."""
    lookups = probes * CHUNKS * len(flip_masks(radius // CHUNKS))
    return lookups * (1.0 + table_size / (1 << CHUNK_BITS))


def build_cost(size: int) -> float:
    return CHUNKS * (8.0 * size + (1 << CHUNK_BITS))  # argsort + bincount/cumsum per chunk


def radius_matches(stored: HammingTable, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per stored hash: the smallest Hamming distance to any query hash (NO_MATCH beyond the
    table's radius) and the support, how many distinct query hashes lie within the radius.
    The smaller side probes the larger one's table (see the module docstring)."""
    best = np.full(len(stored), NO_MATCH, dtype=np.uint8)
    support = np.zeros(len(stored), dtype=np.int64)
    queries = np.unique(np.asarray(queries, dtype=np.uint64))
    if len(queries) == 0 or len(stored) == 0:
        return best, support
    radius = stored.radius
    probe_stored = search_cost(len(stored), len(queries), radius)
    probe_queries = search_cost(len(queries), len(stored), radius) + build_cost(len(queries))
    if probe_stored <= probe_queries:
        query_rows, rows, distances = stored.pairs(queries)
    else:
        rows, query_rows, distances = HammingTable(queries, radius).pairs(stored.hashes)
    np.minimum.at(best, rows, distances)
    unique_pairs = np.unique(rows * len(queries) + query_rows)  # a pair found via two chunks counts once
    support += np.bincount(unique_pairs // len(queries), minlength=len(stored))
    return best, support


def min_distances(stored: HammingTable, queries: np.ndarray) -> np.ndarray:
    return radius_matches(stored, queries)[0]


def brute_radius_matches(
    hashes: np.ndarray, queries: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference all-pairs version of `radius_matches` (tests, benchmarks)."""
    best = np.full(len(hashes), NO_MATCH, dtype=np.uint8)
    support = np.zeros(len(hashes), dtype=np.int64)
    queries = np.unique(np.asarray(queries, dtype=np.uint64))
    if len(queries) == 0 or len(hashes) == 0:
        return best, support
    block = max(1, 4_000_000 // len(queries))
    for start in range(0, len(hashes), block):
        part = popcount(queries[:, None] ^ hashes[None, start : start + block])
        lowest = part.min(axis=0)
        best[start : start + block] = np.where(lowest <= radius, lowest, NO_MATCH)
        support[start : start + block] = (part <= radius).sum(axis=0)
    return best, support


def brute_min_distances(hashes: np.ndarray, queries: np.ndarray, radius: int) -> np.ndarray:
    return brute_radius_matches(hashes, queries, radius)[0]
