"""The `taskgate` command line (`python -m taskgate.cli` runs it too)."""

from taskgate.cli.main import app

__all__ = ["app"]
