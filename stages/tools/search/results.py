"""Search results and how R1V4 shows them: numbered lists of title, link and snippet or image."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class SearchHit:
    title: str
    link: str
    snippet: str = ""
    image: str = ""  # image URL for image search hits (a web address, never a host file path)
    score: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def format_hits(header: str, hits: list[SearchHit]) -> str:
    """One block per query or image: a header line, then `1. title`, link, snippet/image lines."""
    if not hits:
        return f"{header}\nNo results found."
    lines = [header]
    for rank, hit in enumerate(hits, 1):
        lines.append(f"{rank}. {hit.title or '(untitled)'}")
        lines.append(f"   Link: {hit.link}")
        if hit.image:
            lines.append(f"   Image: {hit.image}")
        if hit.snippet:
            lines.append(f"   Snippet: {hit.snippet}")
    return "\n".join(lines)
