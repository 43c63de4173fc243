"""Keeping entries' ids stable across polls when the publisher gives them none.

A derived id is built from the entry's time and first words (see ``extract.derived_id``), so an
edit to those first words would mint a new id and report the edited entry as a new one plus a
deletion. Before that happens, an entry whose derived id is new is matched against the
entries of the previous poll that have vanished: same time as written, mostly the same words
(Jaccard similarity of the word sets) -> it is the same entry, edited, and keeps its old id.
"""

from __future__ import annotations

import re
from dataclasses import replace

from telex.poller.extract import PageEntry

_WORD = re.compile(r"\w+")
SIMILAR = 0.5


def _words(entry: PageEntry) -> set[str]:
    return set(_WORD.findall(f"{entry.title or ''} {entry.text}".casefold()))


def similarity(a: PageEntry, b: PageEntry) -> float:
    """Jaccard similarity of two entries' word sets (0..1)."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def carry_derived_ids(previous: dict[str, PageEntry], entries: list[PageEntry]) -> list[PageEntry]:
    """``entries`` with each new derived id replaced by the id of the vanished entry it edits."""
    current = {e.entry_id for e in entries}
    candidates = [
        e
        for e in previous.values()
        if e.entry_id.startswith("derived:") and e.entry_id not in current
    ]
    if not candidates:
        return entries
    out: list[PageEntry] = []
    for entry in entries:
        if not entry.entry_id.startswith("derived:") or entry.entry_id in previous:
            out.append(entry)
            continue
        best: PageEntry | None = None
        best_score = SIMILAR
        for old in candidates:
            if old.time_raw != entry.time_raw:
                continue
            score = similarity(old, entry)
            if score >= best_score:
                best, best_score = old, score
        if best is None:
            out.append(entry)
            continue
        candidates.remove(best)
        out.append(replace(entry, entry_id=best.entry_id))
    return out
