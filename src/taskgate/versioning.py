"""Optimistic concurrency for versioned resources: a change names the versions it was made
against, and applies only while the resource is still at one of them.

So two editors cannot overwrite each other unseen: the second is refused with 412 and reloads.
The HTTP form of it (``ETag`` and ``If-Match``) is in ``http/preconditions.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskgate.errors import PreconditionFailed


@dataclass(frozen=True)
class ExpectedVersion:
    """The versions a client's change was made against; ``None`` means any version."""

    versions: frozenset[str] | None

    def check(self, version: int, resource: str) -> None:
        """Raise ``PreconditionFailed`` unless ``version`` is one the client named."""
        if self.versions is None or str(version) in self.versions:
            return
        raise PreconditionFailed(
            f"The {resource} is at version {version}; reload it and apply your change again."
        )


def check_version(expected: ExpectedVersion | None, version: int, resource: str) -> None:
    """``expected.check(...)``, and nothing when the client named no version."""
    if expected is not None:
        expected.check(version, resource)
