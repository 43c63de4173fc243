"""The newsroom's watch list: names and terms matched in every update, whatever the list's size.

One Aho-Corasick automaton holds every term and alias, so matching costs the same for ten terms
or a hundred thousand. Matching ignores case (a watch list says "NATO", a page may write
"Nato") but respects word boundaries. Each match is an entity of type ``watch`` and adds the
term's name, lower-cased, to the update's tags.
"""

from __future__ import annotations

from typing import Any, ClassVar

import ahocorasick

from telex.config import Config, WatchTerm
from telex.processor.enrich import Document, Entity
from telex.processor.enrich.gazetteer import Match, on_boundaries, resolve_overlaps


def fold(text: str) -> str:
    """Lower-case ``text`` without changing its length, so offsets stay valid."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters (like "İ") lower-case to two: keep those as they are.
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class WatchEnricher:
    """Adds ``watch`` entities to ``entities`` and the watched names to the notes for tags."""

    name = "watch"
    # Appends to the entities list only when it succeeded as a whole, so a failure leaves the
    # other entities in place.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, terms: tuple[WatchTerm, ...]) -> None:
        self._automaton = ahocorasick.Automaton()
        self.size = 0
        for term in terms:
            for alias in (term.name, *term.aliases):
                key = fold(alias.strip())
                if key:
                    self._automaton.add_word(key, (len(key), term.name))
                    self.size += 1
        if self.size:
            self._automaton.make_automaton()

    @classmethod
    def from_config(cls, config: Config) -> WatchEnricher:
        """The enricher over ``[[processor.watch]]``."""
        return cls(config.processor.watch)

    def find(self, text: str) -> list[Match]:
        """Watched terms in ``text``, longest of overlapping matches, in text order."""
        if not self.size:
            return []
        matches = []
        for end_index, (length, name) in self._automaton.iter(fold(text)):
            start, end = end_index - length + 1, end_index + 1
            if on_boundaries(text, start, end):
                matches.append(Match(start, end, "watch", name))
        return resolve_overlaps(matches)

    def enrich(self, doc: Document) -> None:
        """Append a ``watch`` entity for each match."""
        matches = self.find(doc.text)
        found: list[Entity] = [
            {"text": doc.text[m.start : m.end], "type": "watch", "start": m.start, "end": m.end}
            for m in matches
        ]
        doc.entities.extend(found)
        doc.entities.sort(key=lambda e: (e["start"], e["end"], e["type"]))
        doc.notes["watched"] = list(dict.fromkeys(m.canonical for m in matches))
