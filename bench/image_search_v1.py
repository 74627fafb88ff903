"""FROZEN baseline for bench_tools.py: stages/tools/image_index.py as of commit 226dc02 (before
the one-pass window hashes and multi-index search), kept verbatim apart from this docstring so
the benchmark can time old and new side by side in one run. Not used by the pipeline.

Original docstring:
Local reverse image search: multi-window perceptual hashes, robust to crops and rescales.

A global perceptual hash survives rescaling but not cropping. So both sides hash *windows*:
- the index stores, per corpus image, the DCT hash (pHash, 64 bit) of the whole image and of
  overlapping tiles (2x2 at 60 % and 3x3 at 40 % of each side): a query that is a crop *of* an
  entity image matches one of its tiles;
- a query is hashed over a pyramid of sliding windows (scales 100 % down to 30 % of its size, at
  the aspect ratios present in the index), so a crop of a larger scene that contains the entity
  at small scale has a window that lines up with the entity's whole-image hash.
A match is the smallest Hamming distance over all (window, hash) pairs, accepted under
`MAX_DISTANCE` bits; the brute-force popcount is vectorised with numpy and takes a few
milliseconds for a world-size corpus (tens of thousands of hashes).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.images import ImageError, read_image
from stages.tools.corpus import ensure_index, iter_jsonl
from stages.tools.results import SearchHit

HASH_SIDE = 32
MAX_DISTANCE = 10  # of 64 bits
TILE_LAYOUTS = (
    (1, 1.0),
    (1, 0.6),
    (2, 0.6),
    (3, 0.4),
)  # (grid, window side fraction); 1-grid tiles are centred
QUERY_SCALES = tuple(float(s) for s in np.geomspace(1.0, 0.3, 16))
QUERY_STRIDE = 0.06  # of the window side
WORK_SIDE = 512  # queries are downscaled so the longer side is at most this


def _dct_matrix() -> np.ndarray:
    """The 8 lowest rows of the orthonormal DCT-II basis on HASH_SIDE points (as cv2.dct uses)."""
    n = np.arange(HASH_SIDE)
    rows = np.cos(np.pi * (2 * n[None, :] + 1) * np.arange(8)[:, None] / (2 * HASH_SIDE))
    rows *= np.sqrt(2.0 / HASH_SIDE)
    rows[0] /= np.sqrt(2.0)
    return rows


DCT = _dct_matrix()
BIT_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def _window_means(integral: np.ndarray, xs: np.ndarray, ys: np.ndarray, win_w: int, win_h: int) -> np.ndarray:
    """Mean grey level of a HASH_SIDE x HASH_SIDE grid of cells in every window (vectorised)."""
    k = np.arange(HASH_SIDE + 1)
    x_edges = xs[:, None] + np.round(k * win_w / HASH_SIDE).astype(int)[None, :]  # (nx, 33)
    y_edges = ys[:, None] + np.round(k * win_h / HASH_SIDE).astype(int)[None, :]  # (ny, 33)
    corners = integral[y_edges[:, None, :, None], x_edges[None, :, None, :]]  # (ny, nx, 33, 33)
    sums = corners[:, :, 1:, 1:] - corners[:, :, :-1, 1:] - corners[:, :, 1:, :-1] + corners[:, :, :-1, :-1]
    area = np.diff(y_edges, axis=1)[:, None, :, None] * np.diff(x_edges, axis=1)[None, :, None, :]
    return (sums / np.maximum(area, 1)).reshape(-1, HASH_SIDE, HASH_SIDE)


def hash_cells(cells: np.ndarray) -> np.ndarray:
    """pHash bits from (n, 32, 32) cell means: 8x8 low DCT coefficients above their median."""
    low = (DCT @ cells @ DCT.T).reshape(len(cells), 64)
    bits = low > np.median(low[:, 1:], axis=1, keepdims=True)
    return (bits.astype(np.uint64) * BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)


def integral_image(gray: np.ndarray) -> np.ndarray:
    return cv2.integral(gray.astype(np.float64))


def box_hashes(gray: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """pHashes of (x, y, w, h) boxes of a grayscale image."""
    integral = integral_image(gray)
    cells = [_window_means(integral, np.array([x]), np.array([y]), w, h) for x, y, w, h in boxes]
    return hash_cells(np.concatenate(cells))


def phash(gray: np.ndarray) -> int:
    """64-bit DCT hash (pHash) of a whole grayscale array."""
    return int(box_hashes(gray, [(0, 0, gray.shape[1], gray.shape[0])])[0])


def to_gray(path: Path) -> np.ndarray:
    image = read_image(path).convert("L")
    return np.asarray(image)


def tile_hashes(gray: np.ndarray) -> list[int]:
    """Whole image first, then the tiles of TILE_LAYOUTS."""
    height, width = gray.shape
    boxes = []
    for grid, frac in TILE_LAYOUTS:
        win_w, win_h = max(8, int(width * frac)), max(8, int(height * frac))
        for gy in range(grid):
            for gx in range(grid):
                x = (width - win_w) // 2 if grid == 1 else int((width - win_w) * gx / (grid - 1))
                y = (height - win_h) // 2 if grid == 1 else int((height - win_h) * gy / (grid - 1))
                boxes.append((x, y, win_w, win_h))
    return [int(h) for h in box_hashes(gray, boxes)]


def window_hashes(gray: np.ndarray, aspects: list[float]) -> np.ndarray:
    """pHashes of sliding windows over the query at several scales and aspect ratios."""
    height, width = gray.shape
    factor = min(1.0, WORK_SIDE / max(height, width))
    if factor < 1.0:
        gray = cv2.resize(gray, (int(width * factor), int(height * factor)), interpolation=cv2.INTER_AREA)
        height, width = gray.shape
    integral = integral_image(gray)
    parts = [hash_cells(_window_means(integral, np.array([0]), np.array([0]), width, height))]
    for aspect in aspects:  # aspect = width / height of corpus images
        for scale in QUERY_SCALES:
            win_h = int(min(height, width / aspect) * scale)
            win_w = int(win_h * aspect)
            if win_h < 12 or win_w < 12:
                continue
            xs = np.arange(0, width - win_w + 1, max(1, int(win_w * QUERY_STRIDE)))
            ys = np.arange(0, height - win_h + 1, max(1, int(win_h * QUERY_STRIDE)))
            parts.append(hash_cells(_window_means(integral, xs, ys, win_w, win_h)))
    return np.unique(np.concatenate(parts))


def build_image_index(corpus_dir: Path, out: Path) -> None:
    records, hashes, owners, kinds, aspects = [], [], [], [], []
    for _, record in iter_jsonl(corpus_dir / "images.jsonl"):
        path = corpus_dir / str(record.get("path", ""))
        try:
            gray = to_gray(path)
        except (ImageError, OSError):
            continue
        index = len(records)
        records.append(
            {"path": record["path"], "page_url": record.get("page_url", ""), "title": record.get("title", "")}
        )
        for number, value in enumerate(tile_hashes(gray)):
            hashes.append(value)
            owners.append(index)
            kinds.append(0 if number == 0 else 1)
        aspects.append(gray.shape[1] / gray.shape[0])
    np.save(out / "hashes.npy", np.asarray(hashes, dtype=np.uint64))
    np.save(out / "owners.npy", np.asarray(owners, dtype=np.int32))
    np.save(out / "kinds.npy", np.asarray(kinds, dtype=np.uint8))
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

    def _load(self) -> None:
        source = self.corpus_dir / "images.jsonl"
        if not source.exists():
            raise FileNotFoundError(
                f"local image search needs {source}; build the world (`trajforge world build`)"
            )
        path = ensure_index(
            self.index_root, "image", source, lambda out: build_image_index(self.corpus_dir, out)
        )
        self.hashes = np.load(path / "hashes.npy")
        self.owners = np.load(path / "owners.npy")
        self.kinds = np.load(path / "kinds.npy")
        self.records = json.loads((path / "records.json").read_text())
        self.aspects = common_aspects(np.load(path / "aspects.npy"))
        self._loaded = True

    def _distances(self, queries: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per index hash: the smallest Hamming distance to any query hash (65 where masked out)."""
        distances = np.full(len(self.hashes), 65, dtype=np.uint8)
        selected = np.flatnonzero(mask)
        block = max(1, 4_000_000 // max(1, len(queries)))  # bounds the (queries x hashes) matrix
        for start in range(0, len(selected), block):
            rows = selected[start : start + block]
            distances[rows] = np.bitwise_count(queries[:, None] ^ self.hashes[rows][None, :]).min(axis=0)
        return distances

    def search(self, path: Path, k: int = 5) -> list[SearchHit]:
        if not self._loaded:
            self._load()
        if len(self.hashes) == 0:
            return []
        gray = to_gray(path)
        windows = window_hashes(gray, self.aspects)  # the query *contains* the entity: vs whole images
        whole = self._distances(windows, self.kinds == 0)
        tiles = self._distances(np.asarray([phash(gray)], dtype=np.uint64), self.kinds == 1)  # a crop *of* it
        best = np.full(len(self.records), 65, dtype=np.int64)
        np.minimum.at(best, self.owners, np.minimum(whole, tiles).astype(np.int64))
        order = np.argsort(best, kind="stable")
        hits = []
        for index in order[:k]:
            if best[index] > MAX_DISTANCE:
                break
            record = self.records[int(index)]
            similarity = 1.0 - best[index] / 64
            hits.append(
                SearchHit(
                    title=record["title"],
                    link=record["page_url"],
                    image=str((self.corpus_dir / record["path"]).resolve()),
                    snippet=f"visual match {similarity:.0%}",
                    score=float(similarity),
                )
            )
        return hits
