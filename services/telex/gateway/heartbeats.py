"""Heartbeats and idle closes: what the gateway tells connections when the wire is quiet.

A subscribed connection that has been sent nothing for ``heartbeat_interval`` seconds gets a
``heartbeat`` frame with the head cursor (so a client on a quiet filter still learns how far
the wire has gone); a connection with no subscription for ``idle_timeout`` seconds is closed
with :data:`~telex.gateway.closes.CLOSE_IDLE`. One sweep over every connection, twice per
the shorter of the two periods; no timer per connection.
"""

from __future__ import annotations

import asyncio
import time

from telex import metrics
from telex.config import GatewayConfig
from telex.gateway.closes import CLOSE_IDLE
from telex.gateway.frames import control, sse_message, ws_frame
from telex.gateway.hub import Hub


async def heartbeats(hub: Hub, settings: GatewayConfig) -> None:
    """Sweep the connections forever (run it as a task)."""
    period = min(settings.heartbeat_interval, settings.idle_timeout) / 2
    while True:
        await asyncio.sleep(period)
        sweep(hub, settings, time.monotonic())


def sweep(hub: Hub, settings: GatewayConfig, now: float) -> None:
    """Close the idle connections and send a heartbeat to those that are due one."""
    interval = settings.heartbeat_interval
    due = []
    for conn in list(hub.conns):
        if conn.closing:
            continue
        if not conn.subs and now - conn.since > settings.idle_timeout:
            metrics.CLOSES.labels("idle").inc()
            conn.transport.close(CLOSE_IDLE, "idle: no subscription")
        elif conn.keys and now - conn.since >= interval:
            due.append(conn)
            conn.since = now
    if due:
        cursor = hub.head_cursor()
        payload = control("heartbeat", cursor=cursor)
        hub.broadcast(ws_frame(payload), sse_message(payload, cursor, "heartbeat"), due)
