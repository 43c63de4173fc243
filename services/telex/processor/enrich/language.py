"""The language of an update, as an ISO 639-1 code.

``py3langid`` (a maintained fork of langid.py) ships its model inside the wheel, so nothing is
downloaded at run time, and it is deterministic. It answers with ISO 639-1 codes only. Short
texts say too little to be sure of: below ``language_min_chars`` characters, or below
``language_min_confidence``, the language is null rather than a guess. Only the first
``language_max_chars`` characters are read: a paragraph is plenty to tell a language, and the
classifier's cost grows with the length.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from telex.config import Config
from telex.processor.enrich import Document

_lock = threading.Lock()
_identifier: LanguageIdentifier | None = None


def identifier() -> LanguageIdentifier:
    """The shared classifier (loading the model takes about a second, so it is done once)."""
    global _identifier
    with _lock:
        if _identifier is None:
            loaded = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            # The wire promises ISO 639-1. The model also knows languages that have only a
            # 639-3 code (Egyptian Arabic "arz", Cantonese "yue", ...) and "zxx" (no language):
            # without them, such text is read as its macrolanguage ("ar", "zh") or left null.
            loaded.set_languages([code for code in loaded.labels if len(code) == 2])
            _identifier = loaded
        return _identifier


class LanguageEnricher:
    """Writes ``language``: an ISO 639-1 code, or null when unsure."""

    name = "language"
    defaults: ClassVar[dict[str, Any]] = {"language": None}

    def __init__(
        self, min_chars: int = 20, min_confidence: float = 0.5, max_chars: int = 300
    ) -> None:
        self.min_chars = min_chars
        self.min_confidence = min_confidence
        self.max_chars = max_chars
        self._classifier = identifier()

    @classmethod
    def from_config(cls, config: Config) -> LanguageEnricher:
        """The enricher with the ``[processor]`` language settings."""
        p = config.processor
        return cls(p.language_min_chars, p.language_min_confidence, p.language_max_chars)

    def detect(self, text: str) -> str | None:
        """The language of ``text``, or ``None`` when it is too short or unclear."""
        sample = " ".join(text[: self.max_chars].split())
        if len(sample) < self.min_chars:
            return None
        code, confidence = self._classifier.classify(sample)
        return str(code) if float(confidence) >= self.min_confidence else None

    def enrich(self, doc: Document) -> None:
        """Detect the language of the title and text."""
        text = f"{doc.title}. {doc.text}" if doc.title else doc.text
        doc.fields["language"] = self.detect(text)
