"""A sentiment score in [-1, 1]: VADER's compound score, averaged over sentences.

VADER (``vaderSentiment``) is rule- and lexicon-based, and its lexicon ships in the wheel. It
is built for sentences: its authors advise scoring a paragraph sentence by sentence and
averaging, which is also far cheaper (its negation check is quadratic in the length of what it
is given). It knows English only, so an update in another language (or of unknown language)
gets null rather than a meaningless number.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from telex.config import Config
from telex.processor.diff import sentences
from telex.processor.enrich import Document


class SentimentEnricher:
    """Writes ``sentiment``: VADER compound in [-1, 1], or null for non-English text."""

    name = "sentiment"
    defaults: ClassVar[dict[str, Any]] = {"sentiment": None}

    def __init__(self, max_chars: int = 1000) -> None:
        self.max_chars = max_chars
        self._analyzer = SentimentIntensityAnalyzer()

    @classmethod
    def from_config(cls, config: Config) -> SentimentEnricher:
        """The enricher (VADER has no settings telex exposes)."""
        return cls()

    def score(self, text: str) -> float:
        """The mean compound score of ``text``'s sentences, rounded to 4 places."""
        parts = sentences(text[: self.max_chars]) or [text]
        total = sum(float(self._analyzer.polarity_scores(s)["compound"]) for s in parts)
        return round(max(-1.0, min(1.0, total / len(parts))), 4)

    def enrich(self, doc: Document) -> None:
        """Score English text; leave others null."""
        # Without a language enricher in the pipeline, assume English rather than score nothing.
        language = doc.fields.get("language", "en")
        doc.fields["sentiment"] = self.score(doc.text) if language == "en" and doc.text else None
