"""Cursors: opaque tokens for a position on the wire, the next offset of every partition.

A cursor is what a client keeps to resume anywhere: any gateway can honour it, because the
position lives in the token, not in the gateway. The token is the URL-safe base64 (unpadded)
of ``partition:offset`` pairs; nothing else about it is promised to clients.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

MAX_TOKEN = 4096  # characters: far more than any real wire's partitions need


class CursorError(ValueError):
    """A cursor token that telex did not issue."""


def encode_cursor(positions: Mapping[int, int]) -> str:
    """An opaque token for a position on the wire: the next offset of every partition."""
    text = ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> dict[int, int]:
    """The positions of a cursor token, or :class:`CursorError`."""
    if len(token) > MAX_TOKEN:
        raise CursorError("cursor too long")
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        pairs = (item.split(":") for item in text.split(",") if item)
        positions = {int(p): int(o) for p, o in pairs}
    except (ValueError, UnicodeDecodeError) as exc:
        raise CursorError(f"malformed cursor {token[:40]!r}") from exc
    if not positions:
        raise CursorError("empty cursor")
    if any(p < 0 or o < 0 for p, o in positions.items()):
        raise CursorError("negative partition or offset in cursor")
    return positions


def advanced(positions: Mapping[int, int], past: Mapping[int, int]) -> dict[int, int]:
    """``positions`` moved forward to ``past`` on every partition it names (never back)."""
    return {p: max(o, past.get(p, 0)) for p, o in positions.items()}
