"""The built-in replay source: the seed live blog served as a live page on loopback."""
