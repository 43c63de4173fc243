"""Every stage's check of the configuration values it owns, wired for :func:`telex.config.load`.

``telex.config`` depends on no stage; the command line validates with these, so a bad HTML
selector or webhook secret stops ``telex`` at start-up with the field named. Only light modules
are imported here: a CLI call to the management API need not load Kafka or the servers.
"""

from __future__ import annotations

from telex.config import Checks
from telex.notifier.signing import secret_key
from telex.poller.selectors import compile_selector

CONFIG_CHECKS = Checks(selector=compile_selector, secret=secret_key)
