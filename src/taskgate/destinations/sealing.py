"""Destination secrets at rest: AES-GCM bound to the destination row, and the URL policy."""

from __future__ import annotations

import uuid

from taskgate.master_secret import master_secret
from taskgate.models import Destination
from taskgate.outbound.secretbox import SecretBox
from taskgate.outbound.ssrf import URLPolicy
from taskgate.settings import Settings


def secret_box(settings: Settings) -> SecretBox:
    """The configured keys, or one key derived from the deployment's master secret."""
    if settings.outbound.secret_keys is not None:
        return SecretBox.from_settings(settings.outbound.secret_keys.get_secret_value())
    return SecretBox.from_master_secret(master_secret(settings))


def url_policy(settings: Settings) -> URLPolicy:
    return URLPolicy(
        allow_private=settings.outbound.allow_private,
        allow_loopback=settings.outbound.allow_loopback,
    )


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
