"""BM25 over the local page corpus with bm25s: a persistent, memory-mapped sparse index.

Why bm25s (not tantivy): it is already a dependency (pure numpy/scipy, no native build), it
saves the index as plain .npy arrays that load with mmap, so a Wikipedia-size index (~6M pages)
opens in well under a second and pages share the OS page cache across Ray workers, and its
query speed (thousands of queries/s on one core) is far beyond what a teacher loop needs. The
index stores byte offsets into pages.jsonl instead of a copy of the corpus; each page is indexed
by its title (twice, as a boost) and its first `LEAD_CHARS` characters, which bounds build memory.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np

from stages.tools.search.local_corpus import ensure_index, iter_jsonl, read_at
from stages.tools.search.results import SearchHit

LEAD_CHARS = 4000
CHUNK = 20_000


def _tokenizer():
    import Stemmer
    from bm25s.tokenization import Tokenizer

    return Tokenizer(stemmer=Stemmer.Stemmer("english"), stopwords="en")


def build_text_index(pages: Path, out: Path) -> None:
    import bm25s

    tokenizer = _tokenizer()
    ids: list[list[int]] = []
    offsets: list[int] = []
    batch: list[str] = []

    def flush() -> None:
        ids.extend(tokenizer.tokenize(batch, return_as="ids", update_vocab=True, show_progress=False))
        batch.clear()

    for offset, page in iter_jsonl(pages):
        title, text = str(page.get("title", "")), str(page.get("text", ""))
        if not (title or text) or not page.get("url"):
            continue
        offsets.append(offset)
        batch.append(f"{title}\n{title}\n{text[:LEAD_CHARS]}")
        if len(batch) >= CHUNK:
            flush()
    if batch:
        flush()
    retriever = bm25s.BM25()
    retriever.index(ids, show_progress=False)
    retriever.save(out, show_progress=False)
    tokenizer.save_vocab(out)
    np.save(out / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    (out / "meta.json").write_text(json.dumps({"pages": len(offsets)}))


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


class LocalTextIndex:
    """Lazy: the index is built (or found) on the first search.

    Searches run in worker threads, so the first ones arrive together: one loads under a lock
    and the index is published only once whole (a search that saw a tokenizer without its
    vocabulary found nothing, and that empty result was cached for every rollout).
    """

    def __init__(self, corpus_dir: Path, index_dir: Path | None = None) -> None:
        self.pages = corpus_dir / "pages.jsonl"
        self.index_root = index_dir or corpus_dir / "index"
        self._retriever = None
        self._tokenizer = None
        self._offsets: np.ndarray | None = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        import bm25s

        if not self.pages.exists():
            raise FileNotFoundError(
                f"local text search needs {self.pages}; build the world (`trajforge world build`)"
            )
        path = ensure_index(
            self.index_root, "text", self.pages, lambda out: build_text_index(self.pages, out)
        )
        retriever = bm25s.BM25.load(path, mmap=True, show_progress=False)
        tokenizer = _tokenizer()
        tokenizer.load_vocab(path)
        self._tokenizer, self._offsets = tokenizer, np.load(path / "offsets.npy", mmap_mode="r")
        self._retriever = retriever  # last: it is what other threads check

    def search(self, query: str, k: int = 5) -> list[SearchHit]:
        if self._retriever is None:
            with self._lock:
                if self._retriever is None:
                    self._load()
        assert self._retriever is not None and self._tokenizer is not None and self._offsets is not None
        n_docs = len(self._offsets)
        if n_docs == 0:
            return []
        tokens = self._tokenizer.tokenize([query], return_as="ids", update_vocab=False, show_progress=False)
        if not tokens or not tokens[0]:
            return []
        docs, scores = self._retriever.retrieve(tokens, k=min(k, n_docs), show_progress=False)
        hits = []
        for doc, score in zip(docs[0], scores[0], strict=True):
            if score <= 0:
                continue
            page = read_at(self.pages, int(self._offsets[int(doc)]))
            snippet = best_snippet(str(page.get("text", "")), query)
            hits.append(
                SearchHit(title=page.get("title", ""), link=page["url"], snippet=snippet, score=float(score))
            )
        return hits
