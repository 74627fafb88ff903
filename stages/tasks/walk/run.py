"""The constrained random walk (R1V4's enhanced questions) over any `stages.readers.corpus.Corpus`.

One walk: start at a seed page; the teacher mines a question with a short answer from its lead
(the answer must be stated there) and checks it is no generic term, platform, abstract concept
or ambiguous; then hop by hop the next entity is chosen among the page's links by mention count
with light shuffling (visited and pervasive pages excluded, pervasive = most linked-to by
in-link count), the teacher extracts the relation and a distinctive property and rewrites the
question so the current entity is described through the next one (answer fixed); a rewrite
that leaks a name, does not disambiguate, or that a corpus search for its clue does not lead
back from, is rejected and the next candidate tried. Finally the last entity's name is replaced
by its picture. Before acceptance: no chain name or alias in the question, the answer concise
and in the evidence, the teacher's uniqueness check over search hits for the question passes.

Shortcut resistance, on any corpus with a search index (BrowseComp's bar: no clue gives the
game away): a hop's clue may state no exact value and, searched alone, must not return its own
entity first; the whole question, searched, must not show the answer's page nor the pictured
entity's in its top 3 (the picture must be needed); no grammar defect. Every rejection is
counted by reason (`WalkStats`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.images import ImageError, decode_image
from pipeline.schema import Task
from stages.readers.corpus.base import Corpus, Page
from stages.tasks.walk.chain import VISIT, Chain, Hop, dumps, gold
from stages.tasks.walk.checks import (
    aliases,
    concise,
    exact_values,
    grammar_defects,
    in_evidence,
    leaked,
    normalise,
)
from stages.tasks.walk.teacher import WalkTeacher

REASONS = ("leak", "not_unique", "generic_answer", "no_image", "llm_unreadable", "answer_not_in_evidence",
           "dead_end", "teacher_error", "clue_finds_entity", "exact_value", "question_finds_answer",
           "picture_not_needed", "grammar")  # fmt: skip
SHORTCUTS = ("clue_finds_entity", "exact_value", "question_finds_answer", "picture_not_needed")
QUESTION_TOP = 3  # the whole question, searched, must not show the answer's entity this high
SHUFFLE = 1.5  # light shuffling: noise added to mention counts when ranking the next entity
HOP_TRIES = 4  # candidates tried per hop before the walk stops there
MIN_IMAGE_SIDE = 64
TOP_K = 5


@dataclass
class WalkSettings:
    n: int = 50
    min_hops: int = 2
    max_hops: int = 6
    seed: int = 0
    text_only: bool = False
    pervasive_share: float = 0.01  # the most linked-to share of pages never becomes a hop
    concurrency: int = 16
    max_walks: int | None = None  # default 4 x n


@dataclass
class WalkStats:
    started: int = 0
    hops: int = 0
    accepted: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    hop_rejected: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "walks_started": self.started,
            "hops_taken": self.hops,
            "tasks_accepted": self.accepted,
            "rejected": {r: self.rejected.get(r, 0) for r in REASONS} | dict(self.rejected),
            "hop_candidates_rejected": dict(self.hop_rejected),
        }


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class Walked:
    """An accepted walk: its task(s) (visual, and text-only when asked) and the picture's bytes."""

    chain: Chain
    image: bytes | None
    tasks: list[Task]


class Walker:
    def __init__(self, corpus: Corpus, teacher: WalkTeacher, settings: WalkSettings) -> None:
        self.corpus, self.teacher, self.s = corpus, teacher, settings
        self.stats = WalkStats()
        self.inlinks = self._inlinks(corpus)
        counts = sorted(self.inlinks.values())
        cut = int(len(counts) * (1 - settings.pervasive_share))
        self.pervasive_limit = counts[min(cut, len(counts) - 1)] if counts else 0
        self._text = self._images = None
        if corpus.search_dir is not None:  # verify clues and pictures with the same search the tools run
            from stages.tools.search.search_tools import LocalImages, LocalText

            self._text = LocalText(corpus.search_dir, None)
            self._images = LocalImages(corpus.search_dir, None)

    @staticmethod
    def _inlinks(corpus: Corpus) -> collections.Counter[str]:
        """In-link counts: from the corpus index when it has them (one pass over a whole
        Wikipedia is hours of parsing), else counted now."""
        saved = corpus.search_dir / "inlinks.json" if corpus.search_dir is not None else None
        if saved is not None and saved.is_file():
            return collections.Counter(json.loads(saved.read_text(encoding="utf-8")))
        return corpus.inlinks()

    # ------------------------------------------------------------------ seeds
    def seeds(self, count: int) -> list[str]:
        """`count` seed titles, reservoir-sampled from the streamed titles (same seed, same list)."""
        rng = random.Random(f"walk-seeds-{self.s.seed}")
        chosen: list[str] = []
        for i, title in enumerate(self.corpus.titles()):
            if len(chosen) < count:
                chosen.append(title)
            elif (j := rng.randint(0, i)) < count:
                chosen[j] = title
        rng.shuffle(chosen)
        return chosen

    # ------------------------------------------------------------------ one walk
    async def walk(self, index: int, seed_title: str) -> Walked:
        rng = random.Random(f"walk-{self.s.seed}-{index}")
        target = rng.randint(self.s.min_hops, self.s.max_hops)
        start = self.corpus.page(seed_title)
        if start is None:
            raise Rejected("dead_end", f"no page {seed_title!r}")
        mined = await self._ask("mine", {"title": start.title, "lead": start.lead()})
        question, answer = str(mined.get("question", "")).strip(), str(mined.get("answer", "")).strip()
        if not question or not concise(answer) or not in_evidence(answer, start.text):
            raise Rejected(
                "answer_not_in_evidence", f"{answer!r} is not a short answer stated on {start.title}"
            )
        verdict = await self._ask("unique", {"title": start.title, "question": question, "answer": answer})
        kind = str(verdict.get("verdict", "")).lower()
        if kind != "ok":
            reason = "not_unique" if kind == "ambiguous" else "generic_answer"
            raise Rejected(reason, str(verdict.get("reason", kind)))
        chain = Chain(start.title, start.url, question, answer)
        pages = [start]
        reasons: collections.Counter[str] = collections.Counter()
        while len(chain.hops) < target:
            found = await self._hop(pages, question, answer, rng)
            if isinstance(found, collections.Counter):
                reasons = found
                break
            hop, page = found
            chain.hops.append(hop)
            pages.append(page)
            question = hop.question
            self.stats.hops += 1
        if len(chain.hops) < self.s.min_hops:
            common = reasons.most_common(1)
            raise Rejected(common[0][0] if common else "dead_end", f"{len(chain.hops)} hops")
        final = pages[-1]
        chain.final_title, chain.final_url = final.title, final.url
        tasks: list[Task] = []
        if self.s.text_only:  # the text-only variant: the last entity stays named
            await self._validate(chain, question, answer, text_only=True)
            tasks.append(self._task(chain, question, index, text_only=True))
        image = None
        try:
            image, visual = await self._visual(chain, final, question, answer)
            await self._validate(chain, visual, answer, text_only=False)
            tasks.append(self._task(chain, visual, index, text_only=False))
        except Rejected:
            if not tasks:
                raise
            image = None
        return Walked(chain, image, tasks)

    async def _ask(self, step: str, payload: dict[str, Any], image: bytes | None = None) -> dict[str, Any]:
        got = await self.teacher.ask(step, payload, image)
        if got.value is None:
            raise Rejected(got.failure, f"{step}: {got.detail}")
        return got.value

    async def _hop(
        self, pages: list[Page], question: str, answer: str, rng: random.Random
    ) -> tuple[Hop, Page] | collections.Counter[str]:
        """The next hop, or why every candidate was rejected (reason -> count)."""
        current = pages[-1]
        visited = {p.title for p in pages}
        counts = current.mention_counts()
        answer_names = {normalise(a) for a in aliases(answer)}  # the answer's own page is no hop
        candidates = [
            t for t in counts
            if t not in visited and self.inlinks.get(t, 0) <= self.pervasive_limit
            and not answer_names & {normalise(a) for a in aliases(t)}
        ]  # fmt: skip
        candidates.sort(key=lambda t: -(counts[t] + rng.random() * SHUFFLE))
        reasons: collections.Counter[str] = collections.Counter()
        for title in candidates[:HOP_TRIES]:
            nxt = self.corpus.page(title)
            if nxt is None:
                continue
            payload = {
                "question": question,
                "answer": answer,
                "current": {"title": current.title, "lead": current.lead()},
                "next": {"title": nxt.title, "lead": nxt.lead()},
            }
            got = await self.teacher.ask("hop", payload)
            reason = self._hop_problem(got.value, got.failure, current, pages, nxt, answer)
            hop = None
            if not reason:
                reason = await self._shortcut(current, got.value or {})
            if not reason:
                hop = await self._solve(current, nxt, got.value or {})
                reason = "" if hop is not None else "not_unique"  # the clue's search leads elsewhere
            if reason:
                reasons[reason] += 1
                self.stats.hop_rejected[reason] += 1
                continue
            return hop, nxt  # type: ignore[return-value]
        return reasons

    @staticmethod
    def _hop_problem(
        value: dict[str, Any] | None, failure: str, current: Page, pages: list[Page], nxt: Page, answer: str
    ) -> str:
        if value is None:
            return failure or "llm_unreadable"
        rewritten = str(value.get("question", ""))
        if not rewritten.strip():
            return "llm_unreadable"
        if leaked(rewritten, [p.title for p in pages]):
            return "leak"
        if value.get("disambiguates") is not True:
            return "not_unique"
        if normalise(nxt.title) not in normalise(rewritten):
            return "llm_unreadable"  # the rewrite does not describe the entity through the next one
        return ""

    async def _shortcut(self, current: Page, value: dict[str, Any]) -> str:
        """Why the hop's clue gives its entity away ("" when it does not): an exact value in it,
        or a search for the clue alone that returns the entity first."""
        clue = str(value.get("property", "")).strip()
        if exact_values(clue):
            return "exact_value"
        if self._text is not None and clue:
            hits = await self._text.search(clue, 1)
            if hits and hits[0].link == current.url:
                return "clue_finds_entity"
        return ""

    async def _solve(self, current: Page, nxt: Page, value: dict[str, Any]) -> Hop | None:
        """How a solver finds `current` from `nxt`: a search for the clue, else reading the next
        page, which shows its address or names it."""
        relation, prop = str(value.get("relation", "")).strip(), str(value.get("property", "")).strip()
        query = " ".join(f"{nxt.title} {relation} {prop}".split())
        hop = Hop(current.title, current.url, nxt.title, nxt.url, relation, prop, str(value["question"]),
                  query=query)  # fmt: skip
        if self._text is None:
            hop.verified = False
            return hop
        hits = await self._text.search(query, TOP_K)
        if any(h.link == current.url for h in hits):
            return hop
        if current.url in nxt.shown_urls:  # the next page shows the address
            hop.tool, hop.query, hop.shows = VISIT, "", current.url
            return hop
        if f" {normalise(current.title)} " in f" {normalise(nxt.text)} ":  # the next page names it
            hop.tool, hop.query, hop.shows = VISIT, "", current.title
            return hop
        return None

    async def _visual(self, chain: Chain, final: Page, question: str, answer: str) -> tuple[bytes, str]:
        for ref in final.images:
            data = self.corpus.image_bytes(ref)
            if data is None:
                continue
            try:
                image = decode_image(data, name=f"image of {final.title}")
            except ImageError:
                continue
            if min(image.size) < MIN_IMAGE_SIDE:
                continue
            if self._images is not None and not await self._image_found(data, final.url):
                continue
            payload = {"question": question, "answer": answer,
                       "entity": {"title": final.title, "lead": final.lead()}}  # fmt: skip
            got = await self._ask("visual", payload, data)
            if got.get("depicts") is not True:
                continue
            chain.image_url = self.corpus.image_url(ref) or ref  # its web address where the corpus has one
            chain.visual_question = str(got.get("question", "")).strip()
            return data, chain.visual_question
        raise Rejected("no_image", f"no checked picture of {final.title}")

    async def _image_found(self, data: bytes, url: str) -> bool:
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".png") as handle:
            handle.write(data)
            handle.flush()
            hits = await self._images.search(Path(handle.name), TOP_K)  # type: ignore[union-attr]
        return any(h.link == url for h in hits)

    async def _validate(self, chain: Chain, question: str, answer: str, *, text_only: bool) -> None:
        names = chain.titles if not text_only else chain.titles[:-1]
        found = leaked(question, names)
        if found:
            raise Rejected("leak", f"the question names {found[0]}")
        if normalise(answer) in normalise(question).split() or leaked(question, [answer]):
            raise Rejected("leak", "the question states its answer")
        defects = grammar_defects(question)
        if defects:
            raise Rejected("grammar", ", ".join(defects))
        hits: list[dict[str, str]] = []
        if self._text is not None:
            found = await self._text.search(question, TOP_K)
            top = [h.link for h in found[:QUESTION_TOP]]
            if chain.seed_url in top:  # pasting the question into a search finds the answer's page
                raise Rejected("question_finds_answer", f"hit {top.index(chain.seed_url) + 1}")
            if not text_only and chain.final_url in top:  # the text alone finds the pictured entity
                raise Rejected("picture_not_needed", f"hit {top.index(chain.final_url) + 1}")
            hits = [{"title": h.title, "snippet": h.snippet[:200]} for h in found]
        named = chain.titles[-1:] if text_only else []  # the text-only variant names its last entity
        payload = {
            "question": question,
            "answer": answer,
            "chain": chain.titles,
            "named": named,
            "hits": hits,
        }
        check = await self._ask("check", payload)
        if check.get("unique") is not True:
            raise Rejected("not_unique", str(check.get("reason") or check.get("second_answer") or ""))

    def _task(self, chain: Chain, question: str, index: int, text_only: bool) -> Task:
        path, plan = gold(chain, text_only)
        return Task(
            source=f"walk:{self.corpus.name}",
            source_id=f"walk-{self.s.seed}-{index}" + ("-text" if text_only else ""),
            category="multihop",
            mode="deepresearch",
            question=question,
            images=[],  # the runner puts the picture in the run's image store
            gold_answer=chain.answer,
            gold_plan=dumps(plan),
            gold_path=dumps(path),
            meta=dumps(chain.meta(text_only)),
        )


async def run_walks(walker: Walker, log: Any = None) -> list[Walked]:
    """Walks in waves until `n` are accepted or `max_walks` started; accepted in index order."""
    s = walker.s
    limit = s.max_walks or 4 * s.n
    seeds = walker.seeds(limit)
    gate = asyncio.Semaphore(max(1, s.concurrency))
    accepted: list[Walked] = []

    async def one(i: int) -> Walked | Rejected:
        async with gate:
            try:
                return await walker.walk(i, seeds[i % len(seeds)])
            except Rejected as exc:
                return exc

    next_index = 0
    while len(accepted) < s.n and next_index < min(limit, len(seeds) * 4):
        wave = min(limit - next_index, max(4, int((s.n - len(accepted)) * 1.5)))
        results = await asyncio.gather(*(one(i) for i in range(next_index, next_index + wave)))
        for i, result in enumerate(results, start=next_index):
            walker.stats.started += 1
            if isinstance(result, Rejected):
                walker.stats.rejected[result.reason] += 1
                if log is not None:
                    log.info("walk %d from %r rejected: %s", i, seeds[i % len(seeds)], result)
            elif len(accepted) < s.n:
                accepted.append(result)
        next_index += wave
    walker.stats.accepted = len(accepted)
    return accepted
