"""telex: live news pages in, a clean real-time wire out."""

__version__ = "0.1.0"
