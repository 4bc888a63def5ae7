"""Destination secrets at rest: AES-GCM bound to the destination row."""

from __future__ import annotations

import uuid

from taskgate.models import Destination
from taskgate.outbound.secretbox import SecretBox


def _aad(destination_id: uuid.UUID) -> bytes:
    # A ciphertext copied onto another row then fails to open instead of lending its secret.
    return f"destination:{destination_id}".encode()


def seal_secret(box: SecretBox, destination: Destination, secret: str | None) -> None:
    if secret is None:
        destination.secret_ciphertext, destination.secret_kid = None, None
        return
    destination.secret_ciphertext, destination.secret_kid = box.encrypt(
        secret, aad=_aad(destination.id)
    )


def open_secret(box: SecretBox, destination: Destination) -> str | None:
    """The plaintext secret; raises `SecretBoxError` when it cannot be opened."""
    if destination.secret_ciphertext is None or destination.secret_kid is None:
        return None
    return box.decrypt(
        destination.secret_ciphertext, destination.secret_kid, aad=_aad(destination.id)
    )
