"""BM25 over the local page corpus with bm25s: a persistent, memory-mapped sparse index.

Why bm25s (not tantivy): it is already a dependency (pure numpy/scipy, no native build), it
saves the index as plain .npy arrays that load with mmap, so a Wikipedia-size index (~6M pages)
opens in well under a second and pages share the OS page cache across Ray workers, and its
query speed (thousands of queries/s on one core) is far beyond what a teacher loop needs. The
index stores byte offsets into pages.jsonl instead of a copy of the corpus; each page is indexed
by its title (twice, as a boost) and its first `LEAD_CHARS` characters.

Build memory is bounded by sharding: every `SHARD_PAGES` pages are one independent bm25s index
(its own vocabulary) built and saved before the next is read, so a whole Wikipedia (6M pages)
builds in the memory of one shard (about 1 GB) instead of ~100 GB; a search asks every shard
and merges the hits by score (each shard's IDF is its own, close to the whole corpus's for
shards of this size).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.tools.search.local_corpus import ensure_index, iter_jsonl, read_at
from stages.tools.search.results import SearchHit

LEAD_CHARS = 4000
CHUNK = 20_000
SHARD_PAGES = 50_000
INDEX_KIND = "text-v2"  # sharded layout (text-<hash>: one unsharded index, rebuilt)


def _tokenizer():
    import Stemmer
    from bm25s.tokenization import Tokenizer

    return Tokenizer(stemmer=Stemmer.Stemmer("english"), stopwords="en")


def build_text_index(pages: Path, out: Path, shard_pages: int | None = None) -> None:
    """`out/shard-NNNN/` (bm25s index, vocabulary, `offsets.npy`) per `shard_pages` pages."""
    limit = shard_pages or SHARD_PAGES
    shards, total = 0, 0
    docs: list[str] = []
    offsets: list[int] = []
    for offset, page in iter_jsonl(pages):
        title, text = str(page.get("title", "")), str(page.get("text", ""))
        if not (title or text) or not page.get("url"):
            continue
        offsets.append(offset)
        docs.append(f"{title}\n{title}\n{text[:LEAD_CHARS]}")
        if len(docs) >= limit:
            _build_shard(docs, offsets, out / f"shard-{shards:04d}")
            shards, total = shards + 1, total + len(docs)
            docs, offsets = [], []
    if docs or not shards:
        _build_shard(docs, offsets, out / f"shard-{shards:04d}")
        shards, total = shards + 1, total + len(docs)
    (out / "meta.json").write_text(json.dumps({"pages": total, "shards": shards}))


def _build_shard(docs: list[str], offsets: list[int], out: Path) -> None:
    import bm25s

    out.mkdir(parents=True)
    np.save(out / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    if not docs:
        return
    tokenizer = _tokenizer()
    ids: list[list[int]] = []
    for start in range(0, len(docs), CHUNK):
        batch = docs[start : start + CHUNK]
        ids.extend(tokenizer.tokenize(batch, return_as="ids", update_vocab=True, show_progress=False))
    docs.clear()
    retriever = bm25s.BM25()
    retriever.index(ids, show_progress=False)
    retriever.save(out, show_progress=False)
    tokenizer.save_vocab(out)


def best_snippet(text: str, query: str, width: int = 300) -> str:
    """The sentence window sharing most words with the query (a readable, query-aware snippet)."""
    words = {w for w in re.findall(r"\w\w+", query.lower())}
    sentences = re.split(r"(?<=[.!?])\s+", text)
    best, best_score = 0, -1
    for i, sentence in enumerate(sentences[:400]):
        score = len(words & set(re.findall(r"\w\w+", sentence.lower())))
        if score > best_score:
            best, best_score = i, score
    snippet = " ".join(sentences[best : best + 3])
    return snippet[:width].rstrip() + ("..." if len(snippet) > width else "")


@dataclass
class _Shard:
    retriever: object | None  # None: a shard without pages
    tokenizer: object
    offsets: np.ndarray


class LocalTextIndex:
    """Lazy: the index is built (or found) on the first search.

    Searches run in worker threads, so the first ones arrive together: one loads under a lock
    and the index is published only once whole (a search that saw a tokenizer without its
    vocabulary found nothing, and that empty result was cached for every rollout).
    """

    def __init__(self, corpus_dir: Path, index_dir: Path | None = None) -> None:
        self.pages = corpus_dir / "pages.jsonl"
        self.index_root = index_dir or corpus_dir / "index"
        self._shards: list[_Shard] | None = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        import bm25s

        if not self.pages.exists():
            raise FileNotFoundError(
                f"local text search needs {self.pages}; build the world (`trajforge world build`)"
            )
        path = ensure_index(
            self.index_root, INDEX_KIND, self.pages, lambda out: build_text_index(self.pages, out)
        )
        shards = []
        for folder in sorted(path.glob("shard-*")):
            offsets = np.load(folder / "offsets.npy", mmap_mode="r")
            if len(offsets) == 0:
                continue
            tokenizer = _tokenizer()
            tokenizer.load_vocab(folder)
            retriever = bm25s.BM25.load(folder, mmap=True, show_progress=False)
            shards.append(_Shard(retriever, tokenizer, offsets))
        self._shards = shards  # last: it is what other threads check

    def search(self, query: str, k: int = 5) -> list[SearchHit]:
        if self._shards is None:
            with self._lock:
                if self._shards is None:
                    self._load()
        assert self._shards is not None
        found: list[tuple[float, int]] = []  # (score, offset) over every shard
        for shard in self._shards:
            tokens = shard.tokenizer.tokenize(
                [query], return_as="ids", update_vocab=False, show_progress=False
            )
            if not tokens or not tokens[0]:
                continue
            docs, scores = shard.retriever.retrieve(tokens, k=min(k, len(shard.offsets)), show_progress=False)
            found += [
                (float(s), int(shard.offsets[int(d)]))
                for d, s in zip(docs[0], scores[0], strict=True)
                if s > 0
            ]
        hits = []
        for score, offset in sorted(found, key=lambda pair: (-pair[0], pair[1]))[:k]:
            page = read_at(self.pages, offset)
            snippet = best_snippet(str(page.get("text", "")), query)
            hits.append(
                SearchHit(title=page.get("title", ""), link=page["url"], snippet=snippet, score=score)
            )
        return hits
