"""The filter language shared by the gateway (subscriptions) and the notifier (webhooks).

A filter names what a subscriber wants to see::

    {"sources": ["bbc-live"], "terms": ["NATO", "Lavrov said"], "entities": ["Sergey Lavrov"],
     "tags": ["ukraine"], "languages": ["en"], "types": ["created", "revised"]}

Within a field any value may match (OR); across fields all given fields must match (AND); an
empty or absent field matches everything, so ``{}`` is the whole wire. Terms match whole words
or phrases of the title and text, ignoring case. Entities match the text of an entity the
processor found (``data.entities[].text``), ignoring case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_VALUES = 100
_TYPE_PREFIX = "telex.update."
_TYPES = ("created", "revised", "deleted")
FIELDS = ("sources", "terms", "entities", "tags", "languages", "types")


class FilterError(ValueError):
    """A filter that cannot be used; the message names the bad field.

    ``code`` is what clients see as the error's code: ``bad_filter`` for a filter that is
    wrong in itself, ``forbidden`` for one asking for sources the credential may not see.
    """

    def __init__(self, message: str, code: str = "bad_filter") -> None:
        super().__init__(message)
        self.code = code


def _clean(values: list[str], field: str, max_len: int = 200) -> list[str]:
    out: list[str] = []
    for value in values:
        text = " ".join(value.split())
        if not text:
            raise ValueError(f"{field} values must not be empty")
        if len(text) > max_len:
            raise ValueError(f"{field} values must be at most {max_len} characters")
        if text not in out:
            out.append(text)
    return out


class Filter(BaseModel):
    """What a subscriber wants to see. The empty filter matches every event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: tuple[str, ...] = Field(default=(), max_length=MAX_VALUES)
    terms: tuple[str, ...] = Field(default=(), max_length=MAX_VALUES)
    entities: tuple[str, ...] = Field(default=(), max_length=MAX_VALUES)
    tags: tuple[str, ...] = Field(default=(), max_length=MAX_VALUES)
    languages: tuple[str, ...] = Field(default=(), max_length=MAX_VALUES)
    types: tuple[str, ...] = Field(default=(), max_length=len(_TYPES))

    @field_validator("sources", "terms", "entities", "tags", "languages")
    @classmethod
    def _strip(cls, values: tuple[str, ...], info: Any) -> tuple[str, ...]:
        return tuple(_clean(list(values), info.field_name))

    @field_validator("types")
    @classmethod
    def _check_types(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        short = []
        for value in values:
            name = value.removeprefix(_TYPE_PREFIX)
            if name not in _TYPES:
                raise ValueError(
                    f"unknown event type {value!r}; use {', '.join(_TYPES)} "
                    f"(or their full names {_TYPE_PREFIX}...)"
                )
            if name not in short:
                short.append(name)
        return tuple(short)

    @classmethod
    def parse(cls, data: Any) -> Filter:
        """Validate a filter from JSON data, raising :class:`FilterError` naming the bad field."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise FilterError("filter must be a JSON object")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise FilterError(_describe(exc)) from None

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Filter:
        """A filter from query parameters: ``?sources=a,b&terms=nato&types=created``.

        Values are comma-separated; a term containing a comma cannot be given this way (use a
        subscribe message instead). Parameters that are not filter fields are ignored, so that
        the same query string can carry a cursor or a token.
        """
        data = {
            name: [v for v in params[name].split(",") if v.strip()]
            for name in FIELDS
            if name in params
        }
        return cls.parse(data)

    @property
    def key(self) -> str:
        """Canonical text of the filter: equal filters have equal keys (used to share work)."""
        normal = {
            "sources": sorted(self.sources),
            "terms": sorted({t.casefold() for t in self.terms}),
            "entities": sorted({e.casefold() for e in self.entities}),
            "tags": sorted({t.casefold() for t in self.tags}),
            "languages": sorted({lang.casefold() for lang in self.languages}),
            "types": sorted(self.types),
        }
        return orjson.dumps({k: v for k, v in normal.items() if v}).decode()

    def compile(self) -> Matcher:
        """A matcher for this filter, built once and reused for every event."""
        return Matcher(self)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "filter"
        parts.append(f"{field}: {err['msg'].removeprefix('Value error, ')}")
    return "invalid filter: " + "; ".join(parts)


class Matcher:
    """A compiled filter: decides for an event's ``data`` whether it matches."""

    __slots__ = ("_entities", "_languages", "_sources", "_tags", "_terms", "_types", "filter")

    def __init__(self, filter_: Filter) -> None:
        self.filter = filter_
        self._sources = frozenset(filter_.sources)
        self._terms = (
            re.compile(
                r"(?<!\w)(?:"
                + "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in filter_.terms)
                + r")(?!\w)",
                re.IGNORECASE,
            )
            if filter_.terms
            else None
        )
        self._entities = frozenset(e.casefold() for e in filter_.entities)
        self._tags = frozenset(t.casefold() for t in filter_.tags)
        self._languages = frozenset(lang.casefold() for lang in filter_.languages)
        self._types = frozenset(_TYPE_PREFIX + t for t in filter_.types)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether a wire event (a CloudEvent with telex update ``data``) matches."""
        data = event.get("data")
        if not isinstance(data, Mapping):
            return False
        if self._types and event.get("type") not in self._types:
            return False
        if self._sources and data.get("source_id") not in self._sources:
            return False
        if self._languages and str(data.get("language") or "").casefold() not in self._languages:
            return False
        if self._tags and not any(
            isinstance(t, str) and t.casefold() in self._tags for t in data.get("tags") or ()
        ):
            return False
        if self._entities and not any(
            isinstance(e, Mapping) and str(e.get("text", "")).casefold() in self._entities
            for e in data.get("entities") or ()
        ):
            return False
        if self._terms is not None:
            text = f"{data.get('title') or ''}\n{data.get('text') or ''}"
            if not self._terms.search(text):
                return False
        return True
