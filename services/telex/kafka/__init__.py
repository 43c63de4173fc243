"""telex's Kafka layer: everything the services need from Kafka, named by what it is for.

- :mod:`.settings`: ``[kafka]`` turned into client settings (TLS, SASL, acks=all, ...);
- :mod:`.connect`: reaching the cluster at start-up, and one clear line when it cannot be;
- :mod:`.capabilities`: what the broker can do, probed (idempotence, time index, durability);
- :mod:`.clients`: the producer/consumer/admin factories of a process (:class:`Clients`);
- :mod:`.admin`: the topics telex needs, created with partitions, replication, cleanup policy;
- :mod:`.scan`: reading partitions up to their current end (restoring state);
- :mod:`.table`: the table view of a topic: read to its end, then followed;
- :mod:`.consume`: the one resilient fetch loop, and the consumer-group member with its
  rewind hook and commits;
- :mod:`.sends`: the producer every stage sends with, its failures and waits watched;
- :mod:`.commits`: which offsets may be committed once outputs are acknowledged, and the
  background committer of a group member;
- :mod:`.deadletter`: the dead-letter header convention;
- :mod:`.reset`: the signal to start over when a memory-only broker lost its data;
- :mod:`.embedded`: the embedded broker of ``make run``.

The services import from here and read as "what to do with a record".
"""

from __future__ import annotations

from telex.kafka.admin import TopicSpec, ensure_topics, required_topics
from telex.kafka.clients import Clients, stop_quietly
from telex.kafka.commits import Committer
from telex.kafka.connect import BrokerError
from telex.kafka.consume import GroupConsumer, fetch_forever
from telex.kafka.scan import Batch
from telex.kafka.sends import Producer, SendWatch
from telex.kafka.table import TopicFollower

__all__ = [
    "Batch",
    "BrokerError",
    "Clients",
    "Committer",
    "GroupConsumer",
    "Producer",
    "SendWatch",
    "TopicFollower",
    "TopicSpec",
    "ensure_topics",
    "fetch_forever",
    "required_topics",
    "stop_quietly",
]
