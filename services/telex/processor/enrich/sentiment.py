"""A sentiment score in [-1, 1]: VADER's compound score, averaged over sentences.

VADER (``vaderSentiment``) is rule- and lexicon-based, and its lexicon ships in the wheel. It
is built for sentences: its authors advise scoring a paragraph sentence by sentence and
averaging, which is also far cheaper (its negation check is quadratic in the length of what it
is given). It knows English only, so an update in another language (or of unknown language)
gets null rather than a meaningless number.

:class:`FastVader` gives VADER's own scores faster: vaderSentiment 3.3.2 (unchanged since
2020) rebuilds the whole lowercased word list for every lexicon word it checks for negations
and idioms (quadratic in the sentence), runs its full rule chain for words it then finds are
not in its lexicon, and copies the text character by character to replace
emoji. It hands those checks only the few words they read, and skips the copy when the text
holds no emoji; the scores are identical (tests compare it with the library on real text).
"""

from __future__ import annotations

from typing import Any, ClassVar

from vaderSentiment import vaderSentiment as vader
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from telex.config import Config
from telex.processor.diff import sentences
from telex.processor.enrich import Document


class FastVader(SentimentIntensityAnalyzer):  # type: ignore[misc]
    """VADER with the same scores, without its quadratic and per-character work."""

    def __init__(self) -> None:
        super().__init__()
        # The library looks emoji up character by character: only one-character keys match.
        self._emoji_chars = frozenset(k for k in self.emojis if len(k) == 1)

    def polarity_scores(self, text: str) -> dict[str, float]:
        """VADER's scores for ``text`` (the library's ``polarity_scores``, same results)."""
        if not self._emoji_chars.isdisjoint(text):
            return super().polarity_scores(text)  # type: ignore[no-any-return]
        # From here on the library's own steps, with the emoji copy (a no-op) left out.
        text = text.strip()
        sentitext = vader.SentiText(text)
        sentiments: list[float] = []
        words = sentitext.words_and_emoticons
        for i, item in enumerate(words):
            lowered = item.lower()
            if lowered in vader.BOOSTER_DICT:
                sentiments.append(0)
                continue
            if i < len(words) - 1 and lowered == "kind" and words[i + 1].lower() == "of":
                sentiments.append(0)
                continue
            if lowered not in self.lexicon:
                # sentiment_valence gives 0 to a word outside the lexicon; most words are.
                sentiments.append(0)
                continue
            sentiments = self.sentiment_valence(0, sentitext, item, i, sentiments)
        sentiments = self._but_check(words, sentiments)
        return self.score_valence(sentiments, text)  # type: ignore[no-any-return]

    @staticmethod
    def _negation_check(valence: float, words: list[str], start_i: int, i: int) -> float:
        # The library's check reads words i-3 .. i-1 only (the caller ensures i > start_i):
        # give it those, not the whole sentence it would lowercase in full.
        lo = max(0, i - 3)
        return SentimentIntensityAnalyzer._negation_check(  # type: ignore[no-any-return]
            valence, words[lo : i + 1], start_i, i - lo
        )

    @staticmethod
    def _special_idioms_check(valence: float, words: list[str], i: int) -> float:
        # Called with i > 2; reads words i-3 .. i+2 and whether i+1 and i+2 exist, which the
        # window preserves.
        return SentimentIntensityAnalyzer._special_idioms_check(  # type: ignore[no-any-return]
            valence, words[i - 3 : i + 3], 3
        )


class SentimentEnricher:
    """Writes ``sentiment``: VADER compound in [-1, 1], or null for non-English text."""

    name = "sentiment"
    defaults: ClassVar[dict[str, Any]] = {"sentiment": None}

    def __init__(self, max_chars: int = 1000) -> None:
        self.max_chars = max_chars
        self._analyzer = FastVader()

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
