"""A group member SIGKILLed and restarted at once gets its work back without waiting out its
dead predecessor's session (static group membership, ``[kafka] group_instance_id``).

Two member processes built with telex's own consumer settings (``bench/restart_stall.py``'s
members, ``telex.kafka.GroupConsumer``) share a topic on the Apache Kafka cluster; one is
SIGKILLed and started again at once under the same instance id. The session is set to 60 s and
the run gives up after 30 s: a restarted member that had to wait for the dead one's session to
end (what a dynamic member does) cannot pass, whatever the machine's load. The stall figures
per broker are bench/restart_stall.py's, in docs/reliability.md.
"""

from __future__ import annotations

import orjson

from ..conftest import Broker, run_bench

SESSION_MS = 60_000
GIVE_UP_S = 30


async def test_a_killed_and_restarted_static_member_gets_its_partitions_back(
    broker: Broker,
) -> None:
    code, out, err = await run_bench(
        "restart_stall.py",
        "--bootstrap", broker.bootstrap,
        "--runs", "1",
        "--modes", "static",
        "--session-timeout-ms", str(SESSION_MS),
        "--give-up", str(GIVE_UP_S),
        timeout=240,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    rows = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    runs = [r for r in rows if "mode" in r]
    assert [r["mode"] for r in runs] == ["static"]
    assert 0 <= runs[0]["stall_s"] < GIVE_UP_S < SESSION_MS / 1000, runs
    summary = rows[-1]
    assert summary["memory_only"] is False
    assert summary["session_timeout_ms"] == SESSION_MS
