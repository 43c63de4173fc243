"""The poller: watches sources and puts each new or changed entry on the raw topic."""
