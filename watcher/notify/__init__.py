"""``liqwatch notify``: deliver liquidation events to webhooks, Slack and PagerDuty.

A process of its own beside the daemon: it reads the events stream through
its own consumer group and never writes anything the daemon reads, so a
slow or dead sink can never slow a decision.

- ``secret.py``    the Secret type: a value that never shows in a log or an error.
- ``config.py``    the ``[notify]`` table and its ``[[notify.sinks]]``.
- ``keys.py``      the notifier's own Redis keys (dead letters, per-sink progress).
- ``messages.py``  what is sent: one event, or a per-symbol summary of many.
- ``budget.py``    the per-sink message budget that folds a burst into summaries.
- ``formats.py``   each sink type's HTTP request for a message.
- ``signing.py``   the webhook's HMAC-SHA256 signature.
- ``delivery.py``  one message to one sink: timeout, retries, backoff with jitter.
- ``progress.py``  which sinks an entry still owes; XACK once it owes none.
- ``reader.py``    the events streams: the group, our pending entries, claims.
- ``worker.py``    one sink's queue, budget and deliveries.
- ``metrics.py``   the notifier's Prometheus metrics and their /metrics endpoint.
- ``app.py``       the process: readers, one worker per sink, signals.
"""
