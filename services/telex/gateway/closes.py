"""The WebSocket close codes the gateway sends, and what each tells a client to do.

A Server-Sent Events stream ends with a last ``close`` message carrying the same code.
"""

from __future__ import annotations

CLOSE_RESTART = 1012  # "service restart": reconnect, elsewhere if need be, with your cursor
CLOSE_POLICY = 1008  # floods and unusable connection requests: a retry would be the same
CLOSE_INTERNAL = 1011  # a bug on the gateway's side: reconnect with your cursor
CLOSE_IDLE = 4000  # no subscription for too long
CLOSE_SLOW = 4008  # private-use: "you are too slow, resume with your cursor"
