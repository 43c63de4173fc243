"""Tags: lower-case keywords that say what an update is about.

From, in this order: watched terms that matched, the canonical names of the people, places and
organisations mentioned (most mentioned first), then the most frequent content words of the
text (stop words removed, ties broken by first appearance). Deterministic, capped at
``max_tags``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, ClassVar

from telex.config import Config
from telex.processor.enrich import Document
from telex.processor.enrich.gazetteer import data_lines

_TOKEN = re.compile(r"[^\W\d_][\w'\u2019-]*[^\W_]|[^\W\d_]")


class TagsEnricher:
    """Writes ``tags``: lower-case strings, most telling first."""

    name = "tags"
    defaults: ClassVar[dict[str, Any]] = {"tags": []}

    def __init__(self, max_tags: int = 12, keywords: int = 5) -> None:
        self.max_tags = max_tags
        self.keywords = keywords
        self.stopwords = frozenset(" ".join(data_lines("stopwords.txt")).split())

    @classmethod
    def from_config(cls, config: Config) -> TagsEnricher:
        """The enricher with ``[processor] max_tags`` and ``keyword_tags``."""
        return cls(config.processor.max_tags, config.processor.keyword_tags)

    def keywords_of(self, text: str, exclude: set[str]) -> list[str]:
        """The most frequent content words of ``text`` not already in ``exclude``."""
        tokens = _TOKEN.findall(text.lower().replace("\u2019", "'"))
        stopwords = self.stopwords
        words = [t[:-2] if t.endswith("'s") else t for t in tokens]
        # A Counter keeps first-appearance order and sorted() is stable: ties go to the word
        # that appeared first.
        counts = Counter(
            w for w in words if len(w) >= 4 and w not in stopwords and w not in exclude
        )
        return sorted(counts, key=lambda w: -counts[w])[: self.keywords]

    def enrich(self, doc: Document) -> None:
        """Collect the tags of ``doc``."""
        tags: list[str] = [name.lower() for name in doc.notes.get("watched", [])]
        canonical: dict[tuple[int, int], str] = doc.notes.get("canonical", {})
        mentions: Counter[str] = Counter()
        first: dict[str, int] = {}
        for entity in doc.entities:
            if entity["type"] == "watch":
                continue
            name = canonical.get((entity["start"], entity["end"]), entity["text"]).lower()
            mentions[name] += 1
            first.setdefault(name, entity["start"])
        tags.extend(sorted(mentions, key=lambda n: (-mentions[n], first[n])))
        seen = set(tags)
        words_in_names = {w for t in seen for w in t.split()}
        tags.extend(self.keywords_of(doc.text, seen | words_in_names))
        doc.fields["tags"] = list(dict.fromkeys(tags))[: self.max_tags]
