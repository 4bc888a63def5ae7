"""taskgate: a self-hosted orchestrator with one API gateway."""

__version__ = "0.1.0"
