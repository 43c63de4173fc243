"""Quotations and who said them.

A quotation is text between double quotation marks (“…”, "…", «…», „…“). Its speaker is found
in the sentence around it, the way news attributes speech: "…,” Lavrov said', 'Lavrov said:
“…”', 'according to Lavrov'. A pronoun or a role ("he explained", "the diplomat stated") stands
for the person last named before the quote. A quotation in a sentence with no attribution that
directly follows an attributed sentence ("…, Lavrov said. “…”") is given that speaker, as a
reader would. Otherwise the speaker is null: telex does not guess.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from telex.config import Config
from telex.processor.enrich import Document, Entity, Quote
from telex.processor.enrich.entities import _NAME, _SPEECH

_QUOTE = re.compile(r"“(?P<a>[^”“]+)”|\"(?P<b>[^\"]+)\"|«(?P<c>[^»«]+)»|„(?P<d>[^“„]+)“")
_PRONOUNS = r"he|she|they|He|She|They"
_ROLES = (
    r"the (?:diplomat|minister|president|premier|official|spokesman|spokeswoman|spokesperson|"
    r"chancellor|senator|leader|general|ambassador|envoy|foreign minister|prime minister|"
    r"secretary|mayor|governor|CEO|chief)"
)
# Pronouns and roles first: "He" would otherwise be read as a capitalised name.
_SUBJECT = rf"\b(?:(?P<pron>{_PRONOUNS})|(?P<role>{_ROLES})|(?P<name>{_NAME}))"
_ATTRIBUTION = [
    # "…,” Lavrov said  /  “…,” he explained  /  “…,” the diplomat stated
    re.compile(rf"(?:{_SUBJECT})\s+(?:has\s+|had\s+|also\s+|later\s+){{0,2}}(?:{_SPEECH})\b"),
    # “…,” said Lavrov  /  according to Lavrov
    re.compile(rf"\b(?:said|says|according to|added|stated)\s+(?:{_SUBJECT})\b"),
]
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[“\"«„]?[A-Z])|\n+")


def _blank_quotes(text: str) -> str:
    """``text`` with each quotation replaced by filler of the same length.

    Sentences are split on the result, so a quotation of several sentences stays in one piece,
    and attributions are looked for outside quotation marks only. A quotation that ended a
    sentence keeps its final stop so that the sentence still ends there.
    """

    def filler(match: re.Match[str]) -> str:
        inner = next(g for g in match.groups() if g is not None).rstrip()
        tail = "." if inner.endswith((".", "!", "?", "…")) else "x"
        return "x" * (len(match.group(0)) - 1) + tail

    return _QUOTE.sub(filler, text)


def _sentences(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def _tidy(quoted: str) -> str:
    quoted = quoted.strip().rstrip(",;:").strip()
    # A scare quote at the end of a sentence carries the sentence's full stop ("more “facile.”"):
    # that stop is not part of what was said.
    if len(quoted.split()) <= 3 and quoted.endswith("."):
        quoted = quoted[:-1]
    return quoted


def _name_of(person: Entity, canonical: dict[tuple[int, int], str]) -> str:
    return canonical.get((person["start"], person["end"]), person["text"])


class QuotesEnricher:
    """Writes ``quotes``: each quotation with its speaker, or a null speaker."""

    name = "quotes"
    defaults: ClassVar[dict[str, Any]] = {"quotes": []}

    def __init__(self, min_chars: int = 2) -> None:
        self.min_chars = min_chars

    @classmethod
    def from_config(cls, config: Config) -> QuotesEnricher:
        """The enricher (no settings)."""
        return cls()

    def find(self, doc: Document) -> list[Quote]:
        """The quotations of ``doc.text`` with their speakers."""
        text = doc.text
        matches = list(_QUOTE.finditer(text))
        if not matches:
            return []
        persons = [e for e in doc.entities if e["type"] == "person"]
        canonical: dict[tuple[int, int], str] = doc.notes.get("canonical", {})
        outside = _blank_quotes(text)
        spans = _sentences(outside)
        inside = [[m for m in matches if a <= m.start() < b] for a, b in spans]
        quotes: list[Quote] = []
        previous_speaker: str | None = None
        previous_end = -1
        for n, (s_start, s_end) in enumerate(spans):
            # Only a sentence with quotations, or one just before such a sentence, can give a
            # speaker that is used: the attribution patterns are the costly part.
            needed = inside[n] or (n + 1 < len(spans) and inside[n + 1])
            speaker = (
                self._speaker(outside[s_start:s_end], s_start, persons, canonical)
                if needed
                else None
            )
            attributed = speaker is not None
            # A quotation right after an attributed sentence (in the same paragraph or at the
            # start of the next) is the same speaker's.
            follows = previous_end >= 0 and text[previous_end:s_start].count("\n") <= 2
            if speaker is None and inside[n] and follows:
                speaker = previous_speaker
            for match in inside[n]:
                quoted = _tidy(next(g for g in match.groups() if g is not None))
                if len(quoted) >= self.min_chars:
                    quotes.append({"text": quoted, "speaker": speaker})
            previous_speaker = speaker if attributed else None
            previous_end = s_end
        return quotes

    @staticmethod
    def _speaker(
        outside: str,
        offset: int,
        persons: list[Entity],
        canonical: dict[tuple[int, int], str],
    ) -> str | None:
        for pattern in _ATTRIBUTION:
            for match in pattern.finditer(outside):
                at = offset + match.start()
                if match["name"]:
                    start, end = offset + match.start("name"), offset + match.end("name")
                    for person in persons:
                        if person["start"] >= start and person["end"] <= end:
                            return _name_of(person, canonical)
                    continue  # a capitalised word that is not a known person: keep looking.
                # A pronoun or a role: the person last named before it.
                before = [p for p in persons if p["end"] <= at]
                if before:
                    return _name_of(before[-1], canonical)
        return None

    def enrich(self, doc: Document) -> None:
        """Find the quotations of ``doc``."""
        doc.fields["quotes"] = self.find(doc)
