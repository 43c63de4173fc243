"""Enrichment: the fields the processor adds to an update, one enricher per concern.

An enricher reads a :class:`Document` (the update's text and what earlier enrichers found) and
writes the fields it owns. The pipeline runs enrichers in order, times each one, and turns a
failure into that enricher's empty fields plus a metric: one broken enricher degrades a field,
never the update. Enrichers are pure functions of the document and their configuration, so the
same input always gives the same output (re-processing after a crash must emit identical events).

A newsroom adds its own enricher (a heavier NLP model, say) by naming a factory
``"package.module:callable"`` in ``[processor] plugins``; the callable receives the
:class:`~telex.config.Config` and returns an object with the :class:`Enricher` shape.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypedDict, runtime_checkable

from telex import metrics
from telex.config import Config
from telex.log import get_logger

log = get_logger(__name__)


class Entity(TypedDict):
    """A span of ``text``: ``text[start:end] == entity["text"]``."""

    text: str
    type: str  # person | place | org | watch
    start: int
    end: int


class Quote(TypedDict):
    """Words in quotation marks, and who said them when the text says so."""

    text: str
    speaker: str | None


@dataclass
class Document:
    """An update on its way through the enrichers."""

    text: str
    title: str | None = None
    html: str | None = None
    base_url: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    #: What enrichers tell later enrichers but not the wire (canonical names of entities).
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def entities(self) -> list[Entity]:
        """Entities found so far (earlier enrichers' results are visible to later ones)."""
        found: list[Entity] = self.fields.setdefault("entities", [])
        return found


@runtime_checkable
class Enricher(Protocol):
    """One enrichment step."""

    #: Short fixed name, used as a metric label: keep it to [a-z_].
    name: str
    #: The fields this enricher writes, with the value each gets when it fails.
    defaults: ClassVar[dict[str, Any]]

    def enrich(self, doc: Document) -> None:
        """Write this enricher's fields into ``doc.fields``."""


EnricherFactory = Callable[[Config], Enricher]


def _builtin_factories() -> dict[str, EnricherFactory]:
    # Imported here so that `telex --help` does not load gazetteers and language models.
    from telex.processor.enrich.entities import EntitiesEnricher
    from telex.processor.enrich.html import HtmlEnricher
    from telex.processor.enrich.language import LanguageEnricher
    from telex.processor.enrich.quotes import QuotesEnricher
    from telex.processor.enrich.sentiment import SentimentEnricher
    from telex.processor.enrich.tags import TagsEnricher
    from telex.processor.enrich.watch import WatchEnricher

    return {
        "html": HtmlEnricher.from_config,
        "language": LanguageEnricher.from_config,
        "entities": EntitiesEnricher.from_config,
        "watch": WatchEnricher.from_config,
        "quotes": QuotesEnricher.from_config,
        "tags": TagsEnricher.from_config,
        "sentiment": SentimentEnricher.from_config,
    }


BUILTIN = ("html", "language", "entities", "watch", "quotes", "tags", "sentiment")


def load_plugin(spec: str) -> EnricherFactory:
    """The factory named by ``"package.module:callable"``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"enricher plugin {spec!r} must look like 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attr)
    if not callable(factory):
        raise ValueError(f"enricher plugin {spec!r} is not callable")
    return factory  # type: ignore[no-any-return]


class Pipeline:
    """Enrichers run in order; each timed, each failure contained."""

    def __init__(self, enrichers: Sequence[Enricher]) -> None:
        self.enrichers = tuple(enrichers)
        self._timers = {e.name: metrics.ENRICH_SECONDS.labels(e.name) for e in self.enrichers}
        self._failures = {e.name: metrics.ENRICH_FAILURES.labels(e.name) for e in self.enrichers}

    @classmethod
    def from_config(cls, config: Config) -> Pipeline:
        """The built-in enrichers listed in ``[processor] enrichers``, then the plugins."""
        factories = _builtin_factories()
        enrichers: list[Enricher] = []
        for name in config.processor.enrichers:
            enrichers.append(factories[name](config))
        for spec in config.processor.plugins:
            enricher = load_plugin(spec)(config)
            if not isinstance(enricher, Enricher):
                raise TypeError(f"enricher plugin {spec!r} returned {enricher!r}, not an Enricher")
            enrichers.append(enricher)
        return cls(enrichers)

    def defaults(self) -> dict[str, Any]:
        """Every field the pipeline writes, at its empty value."""
        out: dict[str, Any] = {}
        for enricher in self.enrichers:
            out.update(_fresh(enricher.defaults))
        return out

    def run(self, doc: Document) -> dict[str, Any]:
        """Enrich ``doc``; returns its fields (every enricher's field present)."""
        for enricher in self.enrichers:
            started = time.perf_counter()
            try:
                enricher.enrich(doc)
            except Exception as exc:
                # Contained on purpose: a bug or a bad input in one enricher must not cost the
                # update. The field falls back to its empty value and the failure is counted.
                self._failures[enricher.name].inc()
                log.warning("enrich.failed", enricher=enricher.name, error=repr(exc))
                doc.fields.update(_fresh(enricher.defaults))
            finally:
                self._timers[enricher.name].observe(time.perf_counter() - started)
        for key, value in self.defaults().items():
            doc.fields.setdefault(key, value)
        return doc.fields


def _fresh(defaults: dict[str, Any]) -> dict[str, Any]:
    # Defaults may be lists: hand out copies so that no two documents share one.
    return {k: (list(v) if isinstance(v, list) else v) for k, v in defaults.items()}


def names(enrichers: Iterable[Enricher]) -> list[str]:
    """The names of ``enrichers``, in order."""
    return [e.name for e in enrichers]
