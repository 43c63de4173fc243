"""Near-duplicate detection: MinHash signatures and an LSH index of recent updates.

Two blogs reporting the same statement rarely write it identically, so exact hashes cannot link
them. Each update's text becomes a set of word pairs (shingles); a MinHash signature of 64
values estimates the Jaccard similarity of two such sets, and locality-sensitive hashing (16
bands of 4 values) finds the candidates without comparing against every stored update. A
candidate is a near-duplicate when its estimated similarity reaches ``threshold`` and its event
time is within ``window_ms``: then the new update joins its story. Otherwise the update starts
a story of its own, whose id derives from the update id (so re-processing gives the same id).

Shingles are hashed with CRC-32, never Python's ``hash()`` (salted per process): every
processor process must compute the same signature for the same text.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from telex import metrics

NUM_PERM = 64
BANDS = 16
ROWS = NUM_PERM // BANDS
_rng = np.random.default_rng(20240118)  # fixed seed: signatures are part of the contract.
# Multiply-shift hashing: ((a*h + b) mod 2**64) >> 32 with odd a. numpy's uint64 arithmetic
# wraps, which is the mod; it is several times faster than a modulo by a prime.
_A = _rng.integers(1, 2**63, NUM_PERM, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)
_SHIFT = np.uint64(32)
_WORD = re.compile(r"\w+")

Signature = npt.NDArray[np.uint64]


def words(text: str) -> list[str]:
    """The words of ``text``, normalised (NFKC, case-folded)."""
    if not text.isascii():  # NFKC leaves ASCII as it is: skip the pass for most English text
        text = unicodedata.normalize("NFKC", text)
    return _WORD.findall(text.casefold())


def signature(text: str, min_words: int = 8) -> Signature | None:
    """The MinHash signature of ``text``'s word pairs, or ``None`` if it is too short to tell."""
    tokens = words(text)
    if len(tokens) < min_words:
        return None
    # CRC-32 continues: crc32(b, crc32(b" ", crc32(a))) == crc32(a + b" " + b). Each word is
    # hashed once and each pair by one C call, with no shingle string built. Repeated pairs
    # give repeated hashes, which cannot change a minimum, so no set is needed either.
    encoded = " ".join(tokens).encode("utf-8", "surrogatepass").split(b" ")
    spaced = map(zlib.crc32, itertools.repeat(b" "), map(zlib.crc32, encoded))
    hashes = np.fromiter(
        map(zlib.crc32, encoded[1:], spaced), dtype=np.uint64, count=len(encoded) - 1
    )
    permuted = (hashes[:, None] * _A[None, :] + _B[None, :]) >> _SHIFT
    result: Signature = permuted.min(axis=0)
    return result


def similarity(a: Signature, b: Signature) -> float:
    """Estimated Jaccard similarity of the texts behind two signatures."""
    return float(np.count_nonzero(a == b)) / NUM_PERM


def new_story_id(update_id: str) -> str:
    """The id of a story that starts with ``update_id``."""
    return "s_" + hashlib.blake2b(update_id.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True)
class StoryEntry:
    """One update in the index; its signature and event time live in row ``slot``."""

    slot: int
    story_id: str
    event_ms: int


class StoryIndex:
    """Recent updates of every partition, for story linking; bounded in size and event time.

    Signatures and event times are kept as rows of two arrays (a freed row is reused), so that
    matching compares all candidates in one vectorised step instead of gathering them one by
    one.
    """

    def __init__(self, threshold: float, window_ms: int, max_entries: int) -> None:
        self.threshold = threshold
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._entries: OrderedDict[str, StoryEntry] = OrderedDict()
        # Band key -> the rows of the entries that have it.
        self._bands: list[dict[bytes, set[int]]] = [{} for _ in range(BANDS)]
        self._watermark = 0
        self._story_of_row: list[str] = []
        self._sigs: npt.NDArray[np.uint64] = np.zeros((1024, NUM_PERM), dtype=np.uint64)
        self._times: npt.NDArray[np.int64] = np.zeros(1024, dtype=np.int64)
        self._free: list[int] = []
        self._rows = 0  # rows ever handed out; the rest of the arrays is spare capacity

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def watermark(self) -> int:
        """The newest event time indexed so far (unix ms)."""
        return self._watermark

    @staticmethod
    def _keys(sig: Signature) -> list[bytes]:
        raw = sig.tobytes()
        step = ROWS * sig.itemsize
        return [raw[i * step : (i + 1) * step] for i in range(BANDS)]

    def story_of(self, update_id: str) -> str | None:
        """The story ``update_id`` belongs to, if the index holds it."""
        entry = self._entries.get(update_id)
        return entry.story_id if entry is not None else None

    def match(self, sig: Signature, event_ms: int, exclude: str) -> str | None:
        """The story of the most similar recent update, or ``None``.

        Ties go to the earliest update, then to the smallest story id, so the answer does not
        depend on the order the index was filled in.
        """
        candidates: set[int] = set()
        for band, key in zip(self._bands, self._keys(sig), strict=True):
            members = band.get(key)
            if members:
                candidates.update(members)
        excluded = self._entries.get(exclude)
        if excluded is not None:
            candidates.discard(excluded.slot)
        if not candidates:
            return None
        rows = np.fromiter(candidates, dtype=np.intp, count=len(candidates))
        # One comparison of all candidates at once: a live story can have hundreds of members.
        agree = np.count_nonzero(self._sigs[rows] == sig, axis=1)
        near = np.abs(self._times[rows] - event_ms) <= self.window_ms
        # An integer bound on agreeing values is the same test as score >= threshold.
        good = np.flatnonzero(near & (agree >= self.threshold * NUM_PERM - 1e-9))
        best: tuple[float, int, str] | None = None
        for i in good.tolist():
            score = int(agree[i]) / NUM_PERM
            if score < self.threshold:
                continue
            row = int(rows[i])
            rank = (-score, int(self._times[row]), self._story_of_row[row])
            if best is None or rank < best:
                best = rank
        return best[2] if best is not None else None

    def add(self, update_id: str, sig: Signature, story_id: str, event_ms: int) -> None:
        """Remember ``update_id`` (replacing what was known of it) and evict what is too old."""
        self.remove(update_id)
        slot = self._take_slot()
        self._sigs[slot] = sig
        self._times[slot] = event_ms
        self._story_of_row[slot] = story_id
        self._entries[update_id] = StoryEntry(slot, story_id, event_ms)
        for band, key in zip(self._bands, self._keys(sig), strict=True):
            band.setdefault(key, set()).add(slot)
        self._watermark = max(self._watermark, event_ms)
        self._evict()

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._rows == len(self._times):
            grown = 2 * len(self._times)
            self._sigs = np.resize(self._sigs, (grown, NUM_PERM))
            self._times = np.resize(self._times, grown)
        self._rows += 1
        self._story_of_row.append("")
        return self._rows - 1

    def remove(self, update_id: str) -> None:
        """Forget ``update_id``."""
        entry = self._entries.pop(update_id, None)
        if entry is None:
            return
        for band, key in zip(self._bands, self._keys(self._sigs[entry.slot]), strict=True):
            members = band.get(key)
            if members is not None:
                members.discard(entry.slot)
                if not members:
                    del band[key]
        self._free.append(entry.slot)

    def _evict(self) -> None:
        horizon = self._watermark - self.window_ms
        # Entries arrive roughly in event-time order: drop from the oldest end while expired.
        while self._entries:
            update_id, entry = next(iter(self._entries.items()))
            if len(self._entries) > self.max_entries:
                reason = "size"
            elif entry.event_ms < horizon:
                reason = "ttl"
            else:
                break
            self.remove(update_id)
            metrics.STATE_EVICTIONS.labels("stories", reason).inc()
