"""Run tests share the task tests' users."""

from tests.tasks.conftest import alice, bob

__all__ = ["alice", "bob"]
