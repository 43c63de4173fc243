"""From a raw update to a wire event: normalise, dedup, enrich, link stories, describe revisions.

Pure computation, no I/O: the service feeds it records in partition order and produces what it
returns. Everything it decides is a function of the record, the partition's state and the story
index, so re-processing after a crash decides the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from telex import metrics
from telex.config import Config
from telex.events import EventType, RawUpdate, cloudevent
from telex.log import get_logger
from telex.processor.diff import readable_diff
from telex.processor.enrich import Document, Pipeline
from telex.processor.state import Known, PartitionState, event_ms_of
from telex.processor.stories import StoryIndex, new_story_id, signature
from telex.timeparse import iso_from_ms, iso_utc, parse_date, resolve

_trace = get_logger(__name__)

Outcome = Literal["new", "duplicate", "revision", "story_linked", "deleted"]


def published_time(raw: RawUpdate) -> str | None:
    """The entry's publication time in UTC ISO 8601, from what the poller saw."""
    page_date = parse_date(raw["page_date"]) if raw["page_date"] else None
    for candidate in (raw["published"], raw["time_raw"]):
        moment = (
            resolve(candidate, page_date=page_date, page_tz=raw["page_tz"]) if candidate else None
        )
        if moment is not None:
            return iso_utc(moment)
    return None


@dataclass
class Result:
    """What one raw update became."""

    outcome: Outcome
    event: dict[str, Any] | None


class Stage:
    """The processor's logic, shared by every partition of one process."""

    def __init__(self, config: Config, pipeline: Pipeline | None = None) -> None:
        p = config.processor
        self.config = config
        self.pipeline = pipeline if pipeline is not None else Pipeline.from_config(config)
        self.stories = StoryIndex(
            p.story_threshold, int(p.story_window_s * 1000), p.story_max_entries
        )
        self._outcomes = {
            o: metrics.DEDUP_OUTCOMES.labels(o)
            for o in ("new", "duplicate", "revision", "story_linked", "deleted")
        }

    def new_state(self) -> PartitionState:
        """An empty partition state with the configured bounds."""
        p = self.config.processor
        return PartitionState(p.dedup_max_entries, int(p.dedup_ttl_s * 1000))

    def index(self, data: dict[str, Any]) -> None:
        """Put a wire event's update into the story index (restore and other partitions)."""
        story_id = data.get("story_id")
        if not isinstance(story_id, str) or not isinstance(data.get("text"), str):
            return
        if event_ms_of(data) < self.stories.watermark - self.stories.window_ms:
            # Already out of the window: not worth a signature.
            self.stories.remove(data["id"])
            return
        sig = signature(data["text"], self.config.processor.story_min_words)
        if sig is None:
            self.stories.remove(data["id"])
            return
        self.stories.add(data["id"], sig, story_id, event_ms_of(data))

    def index_many(self, updates: list[dict[str, Any]]) -> None:
        """Index the latest version of each of ``updates`` (a restored wire partition).

        Only updates within the story window of the newest one are signed: restoring a long
        wire costs a signature per recent update, not per event ever written.
        """
        latest: dict[str, dict[str, Any]] = {}
        for data in updates:
            if isinstance(data.get("id"), str):
                latest[data["id"]] = data
        if not latest:
            return
        ordered = sorted(latest.values(), key=event_ms_of)
        horizon = max(event_ms_of(ordered[-1]), self.stories.watermark) - self.stories.window_ms
        for data in ordered:
            if event_ms_of(data) >= horizon:
                self.index(data)

    def process(self, raw: RawUpdate, state: PartitionState, processed_ms: int) -> Result:
        """The wire event for ``raw`` (``None`` when the wire already carries it)."""
        result = self._process(raw, state, processed_ms)
        self._outcomes[result.outcome].inc()
        if _trace.logger.isEnabledFor(logging.DEBUG):
            # One line per update at debug level: links the update id to its wire event id.
            event_id = result.event["id"] if result.event is not None else None
            _trace.debug(
                "update.processed", update=raw["id"], outcome=result.outcome, event_id=event_id
            )
        return result

    def _process(self, raw: RawUpdate, state: PartitionState, processed_ms: int) -> Result:
        known = state.get(raw["id"])
        if raw["kind"] == "delete":
            if known is None or known.deleted:
                return Result("duplicate", None)
            return Result("deleted", self._deleted(raw, known, state, processed_ms))
        if known is not None and not known.deleted and known.content_hash == raw["content_hash"]:
            return Result("duplicate", None)

        published = published_time(raw)
        first_seen = known.first_seen_ms if known is not None else raw["detected_ms"]
        data: dict[str, Any] = {
            **_identity(raw),
            "title": raw["title"],
            "text": raw["text"],
            "html": raw["html"],
            "time_raw": raw["time_raw"],
            "published": published,
            "content_hash": raw["content_hash"],
            "previous_hash": known.content_hash if known is not None else None,
        }
        doc = Document(text=raw["text"], title=raw["title"], html=raw["html"], base_url=raw["url"])
        data.update(self.pipeline.run(doc))
        event_ms = event_ms_of({"published": published, "timings": {"first_seen_ms": first_seen}})

        sig = signature(raw["text"], self.config.processor.story_min_words)
        outcome: Outcome
        if known is not None:
            outcome = "revision"
            story_id = known.story_id or new_story_id(raw["id"])
            type_: EventType = "telex.update.revised"
            data["diff"] = readable_diff(
                known.text, raw["text"], known.title, raw["title"],
                self.config.processor.max_diff_chars,
            )  # fmt: skip
        else:
            type_ = "telex.update.created"
            linked = (
                self.stories.match(sig, event_ms, exclude=raw["id"]) if sig is not None else None
            )
            outcome = "story_linked" if linked is not None else "new"
            story_id = linked or new_story_id(raw["id"])
            data["diff"] = None
        data["story_id"] = story_id
        data["timings"] = _timings(raw, first_seen, processed_ms)
        if sig is not None:
            self.stories.add(raw["id"], sig, story_id, event_ms)
        else:
            self.stories.remove(raw["id"])
        state.put(
            raw["id"],
            Known(raw["content_hash"], first_seen, event_ms, story_id, raw["title"], raw["text"]),
        )
        time_iso = published or iso_from_ms(raw["detected_ms"])
        return Result(
            outcome, cloudevent(type_, data, time_iso=time_iso, source_id=raw["source_id"])
        )

    def _deleted(
        self, raw: RawUpdate, known: Known, state: PartitionState, processed_ms: int
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            **_identity(raw),
            "title": known.title,
            "text": "",
            "html": None,
            "time_raw": raw["time_raw"],
            "published": published_time(raw),
            "content_hash": raw["content_hash"],
            "previous_hash": known.content_hash,
            **self.pipeline.defaults(),
            "story_id": known.story_id or new_story_id(raw["id"]),
            "diff": None,
            "timings": _timings(raw, known.first_seen_ms, processed_ms),
        }
        self.stories.remove(raw["id"])
        state.put(
            raw["id"],
            Known(raw["content_hash"], known.first_seen_ms, known.event_ms, known.story_id,
                  known.title, None, deleted=True),
        )  # fmt: skip
        time_iso = data["published"] or iso_from_ms(raw["detected_ms"])
        return cloudevent(
            "telex.update.deleted", data, time_iso=time_iso, source_id=raw["source_id"]
        )


def _identity(raw: RawUpdate) -> dict[str, Any]:
    """The fields that name an update and where it comes from, as the poller wrote them."""
    return {
        "id": raw["id"],
        "source_id": raw["source_id"],
        "source_url": raw["source_url"],
        "entry_id": raw["entry_id"],
        "url": raw["url"],
    }


def _timings(raw: RawUpdate, first_seen_ms: int, processed_ms: int) -> dict[str, int]:
    """When the update was first seen, detected, produced, consumed and processed."""
    return {
        "first_seen_ms": first_seen_ms,
        "detected_ms": raw["detected_ms"],
        "produced_ms": raw.get("produced_ms", raw["detected_ms"]),
        "consumed_ms": raw.get("consumed_ms", processed_ms),
        "processed_ms": processed_ms,
    }
