"""Selection: best rollouts per task, dedup, then a cap with per-category quotas. Deterministic.

Ranking (best first): quality score (mean of the check scores), then fewer tool calls (at equal
quality the shorter trajectory teaches less wandering), then a stable hash of the id (no
dependence on input order). Quotas are shares of the cap per category; each category first takes
up to its share, then any room left is filled in global rank order, so a category that is short
never wastes the cap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from filters.dedup import DedupItem, near_duplicates
from pipeline.config import FilterConfig
from pipeline.schema import stable_hash


@dataclass(frozen=True)
class Candidate:
    trajectory_id: str
    task_id: str
    category: str
    score: float
    tool_calls: int
    question: str = ""
    image: str | None = None

    @property
    def rank(self) -> tuple[float, int, str]:
        return (-round(self.score, 9), self.tool_calls, stable_hash(self.trajectory_id))


def check_quotas(quotas: dict[str, float]) -> None:
    bad = {k: v for k, v in quotas.items() if not 0 <= v <= 1}
    if bad:
        raise ValueError(f"filter.quotas shares must lie in [0, 1], got {bad}")
    if sum(quotas.values()) > 1 + 1e-9:
        raise ValueError(
            f"filter.quotas shares sum to {sum(quotas.values()):.3f}; they must sum to at most 1"
        )


def best_per_task(candidates: Sequence[Candidate], k: int) -> tuple[list[Candidate], dict[str, str]]:
    """The k best rollouts of each task; the rest with the reason they lost."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        groups[c.task_id].append(c)
    kept, dropped = [], {}
    for members in groups.values():
        members.sort(key=lambda c: c.rank)
        kept += members[: max(k, 1)]
        for c in members[max(k, 1) :]:
            dropped[c.trajectory_id] = f"best_per_task: rollout {members[0].trajectory_id} ranks higher"
    kept.sort(key=lambda c: c.rank)
    return kept, dropped


def dedup(
    ranked: Sequence[Candidate], cfg: FilterConfig, image_hash: Callable[[str], int | None]
) -> tuple[list[Candidate], dict[str, str]]:
    items = [DedupItem(c.trajectory_id, c.question, c.image) for c in ranked]
    dupes = near_duplicates(
        items,
        question_similarity=cfg.dedup_question_similarity,
        image_distance=cfg.dedup_image_distance,
        require_both=cfg.dedup_require_both,
        image_hash=image_hash,
    )
    kept = [c for c in ranked if c.trajectory_id not in dupes]
    return kept, {k: f"dedup: near-duplicate of {v}" for k, v in dupes.items()}


def cap_with_quotas(
    ranked: Sequence[Candidate], cap: int, quotas: dict[str, float]
) -> tuple[list[Candidate], dict[str, str]]:
    """At most `cap` candidates; a category with a quota takes at most its share of the cap (its
    best first), and categories without one share what is left, in rank order."""
    check_quotas(quotas)
    ranked = sorted(ranked, key=lambda c: c.rank)
    chosen: set[str] = set()
    dropped: dict[str, str] = {}
    taken: dict[str, int] = defaultdict(int)
    for c in ranked:  # reserved shares first
        if c.category in quotas:
            limit = int(quotas[c.category] * cap)
            if taken[c.category] < limit:
                taken[c.category] += 1
                chosen.add(c.trajectory_id)
            else:
                dropped[c.trajectory_id] = (
                    f"quota: category {c.category} is full ({limit} of the cap of {cap})"
                )
    room = cap - len(chosen)
    for c in ranked:
        if c.category in quotas:
            continue
        if room > 0:
            chosen.add(c.trajectory_id)
            room -= 1
        else:
            dropped[c.trajectory_id] = f"cap: over the cap of {cap} (category {c.category})"
    return [c for c in ranked if c.trajectory_id in chosen], dropped
