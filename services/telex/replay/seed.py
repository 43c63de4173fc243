"""Read the seed live blog (plain text, as copied from the page) into entries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

SEED_FILE = "liveblog-lavrov-2024-01-18.txt"
# The copied text glues the first time to its paragraph ("10:46 GMTIsrael ..."), so the
# zone is matched from a list rather than as "any capitals".
_ENTRY_START = re.compile(
    r"^(?:-\s*)?(?P<time>\d{1,2}:\d\d\s+(?:GMT|UTC|BST|CET|CEST|MSK))\s*(?P<rest>.*)$"
)
_DATE_LINE = re.compile(r"^\d{1,2} [A-Z][a-z]+ \d{4}$")
_ENDED = "This live stream has ended."


@dataclass(frozen=True)
class SeedEntry:
    """One update of the live blog."""

    time: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class SeedBlog:
    """The live blog: headline, intro, date line and entries oldest first."""

    title: str
    intro: tuple[str, ...]
    date_line: str
    entries: tuple[SeedEntry, ...]


def parse_seed(text: str) -> SeedBlog:
    """Parse the seed text: title, intro paragraphs, the date line, then entries newest first."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    title, body = lines[0], lines[1:]
    date_at = next(i for i, line in enumerate(body) if _DATE_LINE.match(line))
    intro = tuple(line for line in body[:date_at] if line != _ENDED)
    entries: list[SeedEntry] = []
    time: str | None = None
    paragraphs: list[str] = []
    for line in body[date_at + 1 :]:
        match = _ENTRY_START.match(line)
        if match:
            if time is not None:
                entries.append(SeedEntry(time, tuple(paragraphs)))
            time = match["time"]
            paragraphs = [match["rest"]] if match["rest"] else []
        elif time is not None:
            paragraphs.append(line)
    if time is not None:
        entries.append(SeedEntry(time, tuple(paragraphs)))
    entries.reverse()
    return SeedBlog(title, intro, body[date_at], tuple(entries))


def load_seed() -> SeedBlog:
    """The seed live blog shipped with telex."""
    text = resources.files("telex.replay").joinpath("data", SEED_FILE).read_text("utf-8")
    return parse_seed(text)
