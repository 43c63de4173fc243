"""A sentiment score in [-1, 1]: VADER's compound score, averaged over sentences.

VADER (``vaderSentiment``) is rule- and lexicon-based, and its lexicon ships in the wheel. It
is built for sentences: its authors advise scoring a paragraph sentence by sentence and
averaging, which is also far cheaper (its negation check is quadratic in the length of what it
is given). It knows English only, so an update in another language (or of unknown language)
gets null rather than a meaningless number.

:class:`FastVader` gives VADER's own compound score faster: vaderSentiment 3.3.2 (unchanged
since 2020) rebuilds the whole lowercased word list for every lexicon word it checks for
negations and idioms (quadratic in the sentence), runs its full rule chain for words it then
finds are not in its lexicon, and copies the text character by character to replace emoji.
``FastVader.compound`` applies the same rules at lexicon words only, on a word list lowercased
once, and skips the copy when the text holds no emoji; the scores are identical (tests compare
it with the library on real and adversarial text).
"""

from __future__ import annotations

import string
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

    def compound(self, text: str) -> float:
        """VADER's compound score for ``text``: ``polarity_scores(text)["compound"]``, faster.

        The library's rules, applied to a word list lowercased once, and only at the words of
        its lexicon (every other word scores 0, and most words are not in it); its negation
        test, which rebuilds a list of all negation words for every word it checks, is a set
        lookup here. Tests hold it equal to the library on real and adversarial text.
        """
        if not self._emoji_chars.isdisjoint(text):
            return float(super().polarity_scores(text)["compound"])
        text = text.strip()
        words = [
            stripped if len(stripped := token.strip(_PUNCTUATION)) > 2 else token
            for token in text.split()
        ]
        if not words:
            return 0.0
        lowered = [w.lower() for w in words]
        lexicon = self.lexicon
        if lexicon.keys().isdisjoint(lowered):
            return 0.0  # every word scores 0: the library's sum is 0 and so is its compound
        count = len(words)
        uppers = sum(map(str.isupper, words))
        is_cap_diff = 0 < count - uppers < count
        sentiments: list[float] = [0] * count
        for i, word in enumerate(lowered):
            if word not in lexicon or word in _BOOSTERS:
                continue
            if word == "kind" and i < count - 1 and lowered[i + 1] == "of":
                continue
            sentiments[i] = self._valence(words, lowered, i, is_cap_diff)
        if "but" in lowered:
            sentiments = self._but_check(words, sentiments)
        total = float(sum(sentiments))
        emphasis = _punctuation_emphasis(text)
        if total > 0:
            total += emphasis
        elif total < 0:
            total -= emphasis
        return round(float(vader.normalize(total)), 4)

    def _valence(self, words: list[str], lowered: list[str], i: int, is_cap_diff: bool) -> float:
        # The library's sentiment_valence for a lexicon word, reading ``lowered``.
        lexicon = self.lexicon
        word = lowered[i]
        valence: float = lexicon[word]
        if word == "no" and i != len(words) - 1 and lowered[i + 1] in lexicon:
            valence = 0.0
        if (
            (i > 0 and lowered[i - 1] == "no")
            or (i > 1 and lowered[i - 2] == "no")
            or (i > 2 and lowered[i - 3] == "no" and lowered[i - 1] in ("or", "nor"))
        ):
            valence = lexicon[word] * vader.N_SCALAR
        if is_cap_diff and words[i].isupper():
            valence = valence + vader.C_INCR if valence > 0 else valence - vader.C_INCR
        for start_i in range(3):
            if i > start_i and lowered[i - (start_i + 1)] not in lexicon:
                # scalar_inc_dec is 0.0 for anything but a booster word: most words.
                s = (
                    vader.scalar_inc_dec(words[i - (start_i + 1)], valence, is_cap_diff)
                    if lowered[i - (start_i + 1)] in _BOOSTERS
                    else 0.0
                )
                if start_i == 1 and s != 0:
                    s = s * 0.95
                if start_i == 2 and s != 0:
                    s = s * 0.9
                valence = _negation(valence + s, lowered, start_i, i)
                if start_i == 2:
                    valence = _idioms(valence, lowered, i)
        previous = lowered[i - 1] if i > 0 else None
        if previous == "least" and previous not in lexicon:
            if i > 1:
                if lowered[i - 2] != "at" and lowered[i - 2] != "very":
                    valence = valence * vader.N_SCALAR
            else:
                valence = valence * vader.N_SCALAR
        return valence


_PUNCTUATION = string.punctuation
_BOOSTERS = frozenset(vader.BOOSTER_DICT)
_NEGATIONS = frozenset(vader.NEGATE)
_SPECIAL_CASES: dict[str, float] = vader.SPECIAL_CASES
# Every word of the phrases the idiom check looks up (idioms and multi-word boosters).
_IDIOM_WORDS = frozenset(
    w for phrase in (*_SPECIAL_CASES, *vader.BOOSTER_DICT) for w in phrase.split()
)


def _negated(word: str) -> bool:
    # The library's negated([word]) for a lowercased word.
    return word in _NEGATIONS or "n't" in word


def _negation(valence: float, lowered: list[str], start_i: int, i: int) -> float:
    # The library's _negation_check, on already lowercased words.
    if start_i == 0:
        if _negated(lowered[i - 1]):
            valence = valence * vader.N_SCALAR
    elif start_i == 1:
        if lowered[i - 2] == "never" and lowered[i - 1] in ("so", "this"):
            valence = valence * 1.25
        elif lowered[i - 2] == "without" and lowered[i - 1] == "doubt":
            pass
        elif _negated(lowered[i - 2]):
            valence = valence * vader.N_SCALAR
    else:
        if (lowered[i - 3] == "never" and lowered[i - 2] in ("so", "this")) or lowered[i - 1] in (
            "so",
            "this",
        ):
            valence = valence * 1.25
        elif lowered[i - 3] == "without" and "doubt" in (lowered[i - 2], lowered[i - 1]):
            pass
        elif _negated(lowered[i - 3]):
            valence = valence * vader.N_SCALAR
    return valence


def _idioms(valence: float, lowered: list[str], i: int) -> float:
    # The library's _special_idioms_check (called with i > 2), on already lowercased words.
    w3, w2, w1, w0 = lowered[i - 3], lowered[i - 2], lowered[i - 1], lowered[i]
    if w0 not in _IDIOM_WORDS and w1 not in _IDIOM_WORDS and w2 not in _IDIOM_WORDS:
        return valence  # every phrase it looks up holds w0, w1 or w2: none can match
    two_one = f"{w2} {w1}"
    three_two_one = f"{w3} {two_one}"
    three_two = f"{w3} {w2}"
    for seq in (f"{w1} {w0}", f"{two_one} {w0}", two_one, three_two_one, three_two):
        if seq in _SPECIAL_CASES:
            valence = _SPECIAL_CASES[seq]
            break
    if len(lowered) - 1 > i:
        zero_one = f"{w0} {lowered[i + 1]}"
        if zero_one in _SPECIAL_CASES:
            valence = _SPECIAL_CASES[zero_one]
        if len(lowered) - 1 > i + 1:
            zero_one_two = f"{zero_one} {lowered[i + 2]}"
            if zero_one_two in _SPECIAL_CASES:
                valence = _SPECIAL_CASES[zero_one_two]
    for n_gram in (three_two_one, three_two, two_one):
        if n_gram in vader.BOOSTER_DICT:
            valence = valence + vader.BOOSTER_DICT[n_gram]
    return valence


def _punctuation_emphasis(text: str) -> float:
    # The library's _punctuation_emphasis: "!" up to 4, and "??"/"???" or more.
    question_marks = text.count("?")
    if question_marks > 3:
        qm = 0.96
    elif question_marks > 1:
        qm = question_marks * 0.18
    else:
        qm = 0.0
    return min(text.count("!"), 4) * 0.292 + qm


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
        total = sum(self._analyzer.compound(s) for s in parts)
        return round(max(-1.0, min(1.0, total / len(parts))), 4)

    def enrich(self, doc: Document) -> None:
        """Score English text; leave others null."""
        # Without a language enricher in the pipeline, assume English rather than score nothing.
        language = doc.fields.get("language", "en")
        doc.fields["sentiment"] = self.score(doc.text) if language == "en" and doc.text else None
