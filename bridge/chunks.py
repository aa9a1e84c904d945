"""Long text cut into pieces a chat platform accepts, at the most natural boundary."""
from __future__ import annotations


def split(text: str, limit: int) -> list[str]:
    """Split at paragraph, then line, then word boundaries; hard-cut only a giant word."""
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), -1)
        if cut < limit // 2:
            cut = window.rfind("\n")
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not chunks:
        chunks.append(rest)
    return chunks
