"""Local reverse image search: multi-window perceptual hashes, robust to crops and rescales.

A global perceptual hash survives rescaling but not cropping. So both sides hash *windows*:
- the index stores, per corpus image, the pHash (pipeline.phash) of the whole image and of
  overlapping tiles (2x2 at 60 % and 3x3 at 40 % of each side): a query that is a crop *of* an
  entity image matches one of its tiles;
- a query is hashed over a pyramid of sliding windows (scales 100 % down to 30 % of its size, at
  the aspect ratios present in the index), so a crop of a larger scene that contains the entity
  at small scale has a window that lines up with the entity's whole-image hash.
A match is the smallest Hamming distance over all (window, hash) pairs, accepted under
`MAX_DISTANCE` bits. Window hashes are computed per window size in one pass (a resize and two
matrix products), and the pairs within `MAX_DISTANCE` are found by multi-index hashing
(stages.tools.search.hamming), so a query costs a few tens of milliseconds and grows slowly with the
corpus.

On disk (`<index>/image-v2-<corpus hash>/`): `hashes.npy` (uint64, packed pHashes),
`owners.npy` (int32, the corpus image of each hash), `kinds.npy` (uint8, 0 whole image, 1 tile),
`aspects.npy` (float32, width / height per image) and `records.json` (path, page_url, title,
url when the corpus names one). Hits show the image's web address (`stages.tools.search.local_corpus.image_url`),
and `locate` maps that address back to the corpus file for a later search on a result image.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from pipeline.images import ImageError, read_image
from pipeline.phash import box_hashes, phash, resize_area, sliding_hashes
from stages.tools.search.hamming import NO_MATCH, HammingTable, radius_matches
from stages.tools.search.local_corpus import ensure_index, image_url, iter_jsonl
from stages.tools.search.results import SearchHit

INDEX_KIND = "image-v2"  # bump when the hash definition changes: old indexes are rebuilt
MAX_DISTANCE = 10  # of 64 bits
TILE_LAYOUTS = (
    (1, 1.0),
    (1, 0.6),
    (2, 0.6),
    (3, 0.4),
)  # (grid, window side fraction); 1-grid tiles are centred
QUERY_SCALES = tuple(float(s) for s in np.geomspace(1.0, 0.3, 16))
QUERY_STRIDE = 1 / 32  # of the window side: one pixel of the 32 px hash grid
WORK_SIDE = 256  # queries are downscaled so the longer side is at most this (the smallest
# window, 30 % of it, still averages > 2 px per hash cell; every window size is one resize of it)
MIN_WINDOW = 12  # px of the work image


def to_gray(path: Path) -> np.ndarray:
    image = read_image(path).convert("L")
    return np.asarray(image)


def tile_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Whole image first, then the tiles of TILE_LAYOUTS, as (x, y, w, h)."""
    boxes = []
    for grid, frac in TILE_LAYOUTS:
        win_w, win_h = max(8, int(width * frac)), max(8, int(height * frac))
        for gy in range(grid):
            for gx in range(grid):
                x = (width - win_w) // 2 if grid == 1 else int((width - win_w) * gx / (grid - 1))
                y = (height - win_h) // 2 if grid == 1 else int((height - win_h) * gy / (grid - 1))
                boxes.append((x, y, win_w, win_h))
    return boxes


def tile_hashes(gray: np.ndarray) -> np.ndarray:
    return box_hashes(gray, tile_boxes(gray.shape[1], gray.shape[0]))


def window_hashes(gray: np.ndarray, aspects: list[float]) -> np.ndarray:
    """Unique pHashes of the whole query and of sliding windows at QUERY_SCALES x `aspects`."""
    height, width = gray.shape
    factor = min(1.0, WORK_SIDE / max(height, width))
    gray = resize_area(gray, max(1, int(width * factor)), max(1, int(height * factor)))
    height, width = gray.shape
    parts = [np.asarray([phash(gray)], dtype=np.uint64)]
    for aspect in aspects:  # aspect = width / height of corpus images
        for scale in QUERY_SCALES:
            win_h = int(min(height, width / aspect) * scale)
            win_w = int(win_h * aspect)
            if win_h < MIN_WINDOW or win_w < MIN_WINDOW:
                continue
            parts.append(sliding_hashes(gray, win_w, win_h, QUERY_STRIDE))
    return np.unique(np.concatenate(parts))


def build_image_index(corpus_dir: Path, out: Path) -> None:
    records, hashes, owners, kinds, aspects = [], [], [], [], []
    for _, record in iter_jsonl(corpus_dir / "images.jsonl"):
        path = corpus_dir / str(record.get("path", ""))
        try:
            gray = to_gray(path)
        except (ImageError, OSError):
            continue
        values = tile_hashes(gray)
        owners.append(np.full(len(values), len(records), dtype=np.int32))
        kinds.append((np.arange(len(values)) > 0).astype(np.uint8))
        hashes.append(values)
        aspects.append(gray.shape[1] / gray.shape[0])
        kept = {
            "path": record["path"],
            "page_url": record.get("page_url", ""),
            "title": record.get("title", ""),
        }
        if record.get("url"):
            kept["url"] = record["url"]
        records.append(kept)

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    np.save(out / "hashes.npy", joined(hashes, np.uint64))
    np.save(out / "owners.npy", joined(owners, np.int32))
    np.save(out / "kinds.npy", joined(kinds, np.uint8))
    np.save(out / "aspects.npy", np.asarray(aspects, dtype=np.float32))
    (out / "records.json").write_text(json.dumps(records))


def common_aspects(aspects: np.ndarray, limit: int = 4) -> list[float]:
    """The few aspect ratios that cover the corpus (log-quantised buckets, most common first)."""
    if len(aspects) == 0:
        return [1.0]
    buckets = np.round(np.log(aspects) / 0.1).astype(int)
    values, counts = np.unique(buckets, return_counts=True)
    return [float(np.exp(v * 0.1)) for v in values[np.argsort(-counts)][:limit]]


class LocalImageIndex:
    def __init__(self, corpus_dir: Path, index_dir: Path | None = None) -> None:
        self.corpus_dir = corpus_dir
        self.index_root = index_dir or corpus_dir / "index"
        self._loaded = False
        self._lock = threading.Lock()  # the first searches arrive together, from worker threads

    def _load(self) -> None:
        with self._lock:
            if not self._loaded:
                self._load_now()

    def _load_now(self) -> None:
        source = self.corpus_dir / "images.jsonl"
        if not source.exists():
            raise FileNotFoundError(
                f"local image search needs {source}; build the world (`trajforge world build`)"
            )
        path = ensure_index(
            self.index_root, INDEX_KIND, source, lambda out: build_image_index(self.corpus_dir, out)
        )
        hashes = np.load(path / "hashes.npy")
        owners = np.load(path / "owners.npy")
        kinds = np.load(path / "kinds.npy")
        self.records = json.loads((path / "records.json").read_text())
        self.urls = [image_url(record) for record in self.records]
        self.files = {
            url: self.corpus_dir / r["path"] for url, r in zip(self.urls, self.records, strict=True) if url
        }
        self.aspects = common_aspects(np.load(path / "aspects.npy"))
        whole = kinds == 0
        self.whole_owners, self.tile_owners = owners[whole], owners[~whole]
        self.whole = HammingTable(hashes[whole], MAX_DISTANCE)  # vs the query's windows
        self.tiles = HammingTable(hashes[~whole], MAX_DISTANCE)  # vs the whole query
        self._loaded = True

    def matches(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per corpus image: the best Hamming distance to the query (NO_MATCH beyond
        MAX_DISTANCE) and the support, how many (query window, image hash) pairs lie within
        MAX_DISTANCE. A true match lines up with a cluster of neighbouring windows (shifts and
        scales), a look-alike with a few isolated ones, so support breaks distance ties."""
        if not self._loaded:
            self._load()
        best = np.full(len(self.records), NO_MATCH, dtype=np.uint8)
        support = np.zeros(len(self.records), dtype=np.int64)
        sides = (
            # the query *contains* the entity: its windows vs whole images
            (self.whole, self.whole_owners, window_hashes(gray, self.aspects)),
            # the query is a crop *of* the entity: the whole query vs tiles
            (self.tiles, self.tile_owners, np.asarray([phash(gray)], dtype=np.uint64)),
        )
        for table, owners, queries in sides:
            distances, counts = radius_matches(table, queries)
            np.minimum.at(best, owners, distances)
            np.add.at(support, owners, counts)
        return best, support

    def locate(self, url: str) -> Path | None:
        """The corpus file behind an image URL this index shows in its hits (None: not one of them)."""
        if not self._loaded:
            self._load()
        return self.files.get(url.strip())

    def distances(self, gray: np.ndarray) -> np.ndarray:
        return self.matches(gray)[0]

    def search(self, path: Path, k: int = 5) -> list[SearchHit]:
        best, support = self.matches(to_gray(path))
        hits = []
        for index in np.lexsort((-support, best))[:k]:
            if best[index] > MAX_DISTANCE:
                break
            record = self.records[int(index)]
            similarity = 1.0 - best[index] / 64
            hits.append(
                SearchHit(
                    title=record["title"],
                    link=record["page_url"],
                    image=self.urls[int(index)],
                    snippet=f"visual match {similarity:.0%}",
                    score=float(similarity),
                )
            )
        return hits
