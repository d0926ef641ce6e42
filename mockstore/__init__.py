"""mockstore: learn a real HTTP API from its traffic, then stand in for it."""

__version__ = "0.1.0"
