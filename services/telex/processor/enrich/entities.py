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

import ahocorasick

from telex.config import Config
from telex.processor.enrich import Document, Entity
from telex.processor.enrich.gazetteer import Gazetteer, Match, build, data_lines, on_boundaries

_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
_WORD = rf"[{_UPPER}][\w-]*(?:['\u2019][{_UPPER}][\w-]*)?"
_NAME = rf"(?:{_WORD}\s+){{0,2}}{_WORD}"
# Words and phrases that introduce a person's name ("Foreign Minister Sergey Lavrov").
TITLES = (
    "President", "Vice President", "Prime Minister", "Deputy Prime Minister", "Foreign Minister",
    "Defence Minister", "Defense Minister", "Interior Minister", "Finance Minister", "Minister",
    "Chancellor", "Secretary of State", "Secretary-General", "Secretary General", "Secretary",
    "Senator", "Sen.", "Representative", "Rep.", "Governor", "Gov.", "Mayor", "Ambassador",
    "Spokesman", "spokesman", "Spokeswoman", "spokeswoman", "Spokesperson", "spokesperson",
    "Leader", "leader", "president", "General", "Gen.", "Colonel", "Col.", "Admiral",
    "Commander", "Pope", "King", "Queen", "Prince", "Princess", "Sheikh", "Ayatollah", "Mr",
    "Mr.", "Mrs", "Mrs.", "Ms", "Ms.", "Dr", "Dr.", "Judge", "Justice", "Speaker", "CEO",
    "Chief executive", "chief executive", "Diplomat", "diplomat", "minister",
)  # fmt: skip
# Verbs of speech after a name ("Lavrov said").
SPEECH = (
    "said", "says", "stated", "told", "added", "argued", "claimed", "insisted", "stressed",
    "warned", "noted", "explained", "suggested", "lamented", "recalled", "reiterated",
    "acknowledged", "announced", "wrote", "tweeted", "asked", "replied", "urged", "declared",
    "confirmed", "denied", "admitted", "commented", "responded", "emphasized", "emphasised",
    "predicted", "promised", "vowed", "believes", "thinks",
)  # fmt: skip
# Words before a name ("said Lavrov", "according to Lavrov").
NAME_AFTER = ("said", "says", "according to", "told by")
# Between a name and its verb of speech, at most two of these ("Lavrov has also said").
_AUXILIARIES = frozenset(("has", "had", "also", "later", "then"))
_SPEECH = "|".join(SPEECH)  # for the quotes enricher's attribution patterns
_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
_WORD = rf"[{_UPPER}][\w-]*(?:['\u2019][{_UPPER}][\w-]*)?"
_NAME = rf"(?:{_WORD}\s+){{0,2}}{_WORD}"
# A name right after a title or "said": matched at the end of the anchor word.
NAME_HERE = re.compile(rf"\s+(?P<name>{_NAME})")
_NAME_WORD = re.compile(_WORD)
# How far before a verb of speech its speaker's name is looked for: three long words and two
# auxiliaries fit easily.
_LOOK_BEHIND = 160
_TITLE, _SPEAKS, _AFTER = 1, 2, 4


def _anchors() -> ahocorasick.Automaton:
    kinds: dict[str, int] = {}
    for words, kind in ((TITLES, _TITLE), (SPEECH, _SPEAKS), (NAME_AFTER, _AFTER)):
        for word in words:
            kinds[word] = kinds.get(word, 0) | kind
    automaton = ahocorasick.Automaton()
    for word, kind in kinds.items():
        automaton.add_word(word, (len(word), kind))
    automaton.make_automaton()
    return automaton


def name_before(text: str, end: int) -> str | None:
    """The capitalised words (up to three) that end just before ``text[end:]``, skipping up to
    two auxiliaries ("Lavrov has also said"): the speaker of a verb of speech at ``end``."""
    head = text[max(0, end - _LOOK_BEHIND) : end]
    if not head or not head[-1].isspace():
        return None
    words = head.split()
    if end > _LOOK_BEHIND and not head[0].isspace():
        words = words[1:]  # the window cut the first word: not a whole word
    i, skipped = len(words), 0
    while i > 0 and skipped < 2 and words[i - 1] in _AUXILIARIES:
        i, skipped = i - 1, skipped + 1
    name: list[str] = []
    while i > 0 and len(name) < 3:
        word = words[i - 1]
        # A name starts at an upper-case letter; what precedes it in the same token ("(" or
        # a quotation mark) ends the name.
        match = next((m for m in _NAME_WORD.finditer(word) if m.end() == len(word)), None)
        if match is None:
            break
        name.insert(0, match.group())
        if match.start() > 0:
            break
        i -= 1
    return " ".join(name) if name else None


class EntitiesEnricher:
    """Writes ``entities``: people, places and organisations with offsets into ``text``."""

    name = "entities"
    defaults: ClassVar[dict[str, Any]] = {"entities": []}

    def __init__(self, gazetteer: Gazetteer) -> None:
        self.gazetteer = gazetteer
        self.not_names = set(data_lines("person-stopwords.txt"))
        self._titles = frozenset(w for t in TITLES for w in t.split() if w[0].isupper())
        self._anchors = _anchors()

    @classmethod
    def from_config(cls, config: Config) -> EntitiesEnricher:
        """The enricher with a gazetteer of cities above ``[processor] min_city_population``."""
        return cls(build(config.processor.min_city_population))

    def _clean_name(self, name: str) -> str | None:
        words = name.split()
        # "The Kremlin said", "But Lavrov said", "Minister Sergey Lavrov said": drop leading
        # function words and titles.
        while words and (words[0] in self.not_names or words[0] in self._titles):
            words.pop(0)
        if not words or all(w in self.not_names for w in words):
            return None
        return " ".join(words)

    def people(self, text: str, known: list[Match]) -> dict[str, bool]:
        """Names of people in ``text``, each mapped to whether a title introduced it.

        One pass of an automaton over the text finds every title and verb of speech; names are
        then read around those few places only, not looked for at every capital letter.
        """
        titled: list[str] = []
        untitled: list[str] = []
        for last, (length, kind) in self._anchors.iter(text):
            start, end = last - length + 1, last + 1
            if not on_boundaries(text, start, end):
                continue
            if kind & (_TITLE | _AFTER):
                match = NAME_HERE.match(text, end)
                if match is not None:
                    (titled if kind & _TITLE else untitled).append(match["name"])
            if kind & _SPEAKS:
                name = name_before(text, start)
                if name is not None:
                    untitled.append(name)
        found: dict[str, bool] = {}
        for raw, is_titled in [(n, True) for n in titled] + [(n, False) for n in untitled]:
            name = self._clean_name(raw)
            if name and name not in found and self.gazetteer.lookup(name) is None:
                found[name] = is_titled
        # A multi-word name also answers to its surname ("Sergey Lavrov" ... "Lavrov said").
        for name, is_titled in list(found.items()):
            parts = name.split()
            if (
                len(parts) > 1
                and parts[-1] not in found
                and self.gazetteer.lookup(parts[-1]) is None
            ):
                found[parts[-1]] = is_titled
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
