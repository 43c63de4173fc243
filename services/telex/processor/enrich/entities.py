"""People, places and organisations named in an update, with character offsets.

Rule-based and offline, built from what ships in wheels:

- places and organisations from the gazetteer (:mod:`telex.processor.enrich.gazetteer`);
- people from the way news writes them: a title before a name ("Foreign Minister Sergey
  Lavrov", "Ukrainian leader Vladimir Zelensky"), a name before or after a verb of speech
  ("Lavrov said", "said Lavrov", "according to Lavrov"); once a person is known, every other
  mention of the full name or the surname in the same update is tagged too.

It is a baseline, not a language model: a newsroom that wants more plugs a heavier enricher in
(see :mod:`telex.processor.enrich`). Entities never overlap; a gazetteer name wins over a
person guess unless a title introduced the person.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from telex.config import Config
from telex.processor.enrich import Document, Entity
from telex.processor.enrich.gazetteer import Gazetteer, Match, build, data_lines, on_boundaries

_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
_WORD = rf"[{_UPPER}][\w-]*(?:['\u2019][{_UPPER}][\w-]*)?"
_NAME = rf"(?:{_WORD}\s+){{0,2}}{_WORD}"
_TITLES = (
    r"President|Vice President|Prime Minister|Deputy Prime Minister|Foreign Minister|"
    r"Defen[cs]e Minister|Interior Minister|Finance Minister|Minister|Chancellor|"
    r"Secretary of State|Secretary-General|Secretary General|Secretary|Senator|Sen\.|"
    r"Representative|Rep\.|Governor|Gov\.|Mayor|Ambassador|[Ss]pokes(?:man|woman|person)|"
    r"[Ll]eader|[Pp]resident|General|Gen\.|Colonel|Col\.|Admiral|Commander|Pope|King|Queen|"
    r"Prince|Princess|Sheikh|Ayatollah|Mr\.?|Mrs\.?|Ms\.?|Dr\.?|Judge|Justice|Speaker|"
    r"CEO|[Cc]hief executive|[Dd]iplomat|[Mm]inister"
)
_SPEECH = (
    r"said|says|stated|told|added|argued|claimed|insisted|stressed|warned|noted|explained|"
    r"suggested|lamented|recalled|reiterated|acknowledged|announced|wrote|tweeted|asked|"
    r"replied|urged|declared|confirmed|denied|admitted|commented|responded|emphasized|"
    r"emphasised|predicted|promised|vowed|believes|thinks"
)
TITLED = re.compile(rf"\b(?:{_TITLES})\s+(?P<name>{_NAME})")
BEFORE_SPEECH = re.compile(
    rf"(?P<name>{_NAME})\s+(?:has\s+|had\s+|also\s+|later\s+|then\s+){{0,2}}(?:{_SPEECH})\b"
)
AFTER_SPEECH = re.compile(rf"\b(?:said|says|according to|told by)\s+(?P<name>{_NAME})")


class EntitiesEnricher:
    """Writes ``entities``: people, places and organisations with offsets into ``text``."""

    name = "entities"
    defaults: ClassVar[dict[str, Any]] = {"entities": []}

    def __init__(self, gazetteer: Gazetteer) -> None:
        self.gazetteer = gazetteer
        self.not_names = set(data_lines("person-stopwords.txt"))

    @classmethod
    def from_config(cls, config: Config) -> EntitiesEnricher:
        """The enricher with a gazetteer of cities above ``[processor] min_city_population``."""
        return cls(build(config.processor.min_city_population))

    def _clean_name(self, name: str) -> str | None:
        words = name.split()
        # "The Kremlin said", "But Lavrov said": drop leading function words.
        while words and words[0] in self.not_names:
            words.pop(0)
        if not words or all(w in self.not_names for w in words):
            return None
        return " ".join(words)

    def people(self, text: str, known: list[Match]) -> dict[str, bool]:
        """Names of people in ``text``, each mapped to whether a title introduced it."""
        found: dict[str, bool] = {}
        for match in TITLED.finditer(text):
            name = self._clean_name(match["name"])
            if name and self.gazetteer.lookup(name) is None:
                found[name] = True
        for pattern in (BEFORE_SPEECH, AFTER_SPEECH):
            for match in pattern.finditer(text):
                name = self._clean_name(match["name"])
                if name and name not in found and self.gazetteer.lookup(name) is None:
                    found[name] = False
        # A multi-word name also answers to its surname ("Sergey Lavrov" ... "Lavrov said").
        for name, titled in list(found.items()):
            parts = name.split()
            if (
                len(parts) > 1
                and parts[-1] not in found
                and self.gazetteer.lookup(parts[-1]) is None
            ):
                found[parts[-1]] = titled
        return found

    def find(self, text: str) -> tuple[list[Entity], dict[tuple[int, int], str]]:
        """The entities of ``text`` and the canonical name of each (by span)."""
        places = self.gazetteer.find(text)
        people = self.people(text, places)
        spans: list[tuple[int, int, str, str, bool]] = [
            (m.start, m.end, m.type, m.canonical, False) for m in places
        ]
        for name, titled in people.items():
            for match in re.finditer(re.escape(name), text):
                if on_boundaries(text, match.start(), match.end()):
                    spans.append((match.start(), match.end(), "person", name, titled))
        # Longest first; a titled person beats a gazetteer name of the same span, a gazetteer
        # name beats an untitled guess.
        spans.sort(key=lambda s: (-(s[1] - s[0]), not s[4], s[2] == "person", s[0]))
        kept: list[tuple[int, int, str, str, bool]] = []
        for span in spans:
            if all(span[1] <= k[0] or span[0] >= k[1] for k in kept):
                kept.append(span)
        kept.sort(key=lambda s: s[0])
        # A surname stands for the longest known full name that ends with it.
        full_names = {n.split()[-1]: n for n in sorted(people, key=len) if " " in n}
        entities: list[Entity] = []
        canonical: dict[tuple[int, int], str] = {}
        for start, end, type_, name, _ in kept:
            entities.append({"text": text[start:end], "type": type_, "start": start, "end": end})
            canonical[(start, end)] = full_names.get(name, name) if type_ == "person" else name
        return entities, canonical

    def enrich(self, doc: Document) -> None:
        """Find the entities of ``doc.text``."""
        entities, canonical = self.find(doc.text)
        doc.fields["entities"] = entities
        doc.notes["canonical"] = canonical
