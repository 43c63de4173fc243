"""The notifier: newsroom alerts as Standard Webhooks, retried through Kafka, never hammering.

Follow the data: :mod:`.subscriptions` (the compacted ``telex.webhooks`` topic) ->
:mod:`.service` (wire and retry topics -> per-endpoint queues) -> :mod:`.delivery` (one signed
HTTP attempt, :mod:`.signing`, :mod:`telex.ssrf`) -> attempts, retry and dead-letter topics;
:mod:`.api` is the ``/v1/webhooks`` surface.
"""
