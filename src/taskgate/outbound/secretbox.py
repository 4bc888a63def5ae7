"""Encryption of stored secrets (AES-256-GCM with a key id) and redaction for logs.

A secret is stored as `(ciphertext, kid)`: the ciphertext is `nonce || AES-GCM output`, and
the kid names the key that sealed it, so keys can be rotated: add a new key in front of the
key list (it becomes the active key), re-seal rows with `rotate`, then drop the old key.

Pass `aad` naming the row a secret belongs to (for example `b"destination:42"`): a ciphertext
copied onto another row then fails to decrypt instead of lending that row its secret.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from taskgate.master_secret import master_secret
from taskgate.settings import Settings

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
REDACTED = "***"


class SecretBoxError(Exception):
    """A secret cannot be sealed or opened: bad key configuration, unknown kid, tampering."""


class SecretBox:
    """Seals and opens secrets with a set of AES-256 keys, one of them active."""

    def __init__(self, keys: Mapping[str, bytes], active_kid: str) -> None:
        if not keys:
            raise SecretBoxError("at least one key is required")
        for kid, key in keys.items():
            if not kid or any(c in kid for c in ":, "):
                raise SecretBoxError(f"invalid key id {kid!r}: it must be non-empty, no ':', ','")
            if len(key) != KEY_BYTES:
                raise SecretBoxError(f"key {kid!r} must be {KEY_BYTES} bytes, not {len(key)}")
        if active_kid not in keys:
            raise SecretBoxError(f"the active key id {active_kid!r} is not among the keys")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self._active_kid = active_kid

    @classmethod
    def from_settings(cls, keys: str, *, active_kid: str | None = None) -> SecretBox:
        """Parse `"kid1:base64key,kid2:base64key"`; the first key is active unless named."""
        parsed: dict[str, bytes] = {}
        for item in keys.split(","):
            item = item.strip()
            if not item:
                continue
            kid, sep, encoded = item.partition(":")
            kid = kid.strip()
            if not sep or not kid:
                raise SecretBoxError("each key must be written as kid:base64key")
            if kid in parsed:
                raise SecretBoxError(f"key id {kid!r} appears twice")
            parsed[kid] = _decode_key(kid, encoded.strip())
        if not parsed:
            raise SecretBoxError("no keys configured")
        return cls(parsed, active_kid if active_kid is not None else next(iter(parsed)))

    @classmethod
    def from_master_secret(cls, secret: str, *, kid: str = "master") -> SecretBox:
        """A box whose single key is derived from the deployment's master secret."""
        return cls({kid: derive_key_from_secret(secret, purpose="secretbox")}, kid)

    @property
    def active_kid(self) -> str:
        return self._active_kid

    def knows(self, kid: str) -> bool:
        return kid in self._ciphers

    def encrypt(self, plaintext: str, *, aad: bytes = b"") -> tuple[bytes, str]:
        """Seal `plaintext` with the active key: returns `(nonce || ciphertext, kid)`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._active_kid].encrypt(nonce, plaintext.encode(), aad)
        return nonce + sealed, self._active_kid

    def decrypt(self, ciphertext: bytes, kid: str, *, aad: bytes = b"") -> str:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SecretBoxError(f"unknown key id {kid!r}: is the key still configured?")
        if len(ciphertext) < NONCE_BYTES + TAG_BYTES:
            raise SecretBoxError("ciphertext is too short")
        try:
            plaintext = cipher.decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], aad)
            return plaintext.decode()
        except InvalidTag as exc:
            raise SecretBoxError(
                "ciphertext failed authentication (tampered, wrong key or wrong aad)"
            ) from exc
        except UnicodeDecodeError as exc:
            raise SecretBoxError("decrypted secret is not UTF-8") from exc

    def rotate(self, ciphertext: bytes, kid: str, *, aad: bytes = b"") -> tuple[bytes, str]:
        """Re-seal under the active key. Already active: returned unchanged (after a check)."""
        plaintext = self.decrypt(ciphertext, kid, aad=aad)
        if kid == self._active_kid:
            return ciphertext, kid
        return self.encrypt(plaintext, aad=aad)


def secret_box(settings: Settings) -> SecretBox:
    """The configured keys, or one key derived from the deployment's master secret."""
    if settings.outbound.secret_keys is not None:
        return SecretBox.from_settings(settings.outbound.secret_keys.get_secret_value())
    return SecretBox.from_master_secret(master_secret(settings))


def generate_key() -> str:
    """A new random key, base64-encoded, for `TASKGATE_…` key settings."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def derive_key_from_secret(secret: str, *, purpose: str) -> bytes:
    """A 32-byte key for `purpose`, derived from a master secret with HKDF-SHA256.

    HKDF does not stretch: the master secret must already be long and random.
    """
    if not secret:
        raise SecretBoxError("the master secret is empty")
    if not purpose:
        raise SecretBoxError("a purpose is required, so that keys for different uses differ")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=f"taskgate:{purpose}".encode(),
    )
    return hkdf.derive(secret.encode())


def _decode_key(kid: str, encoded: str) -> bytes:
    padded = encoded + "=" * (-len(encoded) % 4)
    urlsafe = "-" in encoded or "_" in encoded
    try:
        key = base64.b64decode(padded, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError) as exc:
        # Never echo the key material itself.
        raise SecretBoxError(f"key {kid!r} is not valid base64") from exc
    if len(key) != KEY_BYTES:
        raise SecretBoxError(f"key {kid!r} must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


DEFAULT_SECRET_KEYS = frozenset(
    {
        "secret",
        "password",
        "token",
        "api_key",
        "apikey",
        "x_api_key",
        "authorization",
        "proxy_authorization",
        "signing_secret",
        "client_secret",
        "access_token",
        "refresh_token",
        "private_key",
        "passphrase",
        "cookie",
        "set_cookie",
        "credentials",
    }
)
# A key containing one of these is secret whatever else it says (`db_password`, `hook_token`)...
SECRET_KEY_MARKERS = ("secret", "password", "passwd", "token", "api_key", "apikey", "private_key")
# ...except token counts, which AI runs report everywhere (`max_tokens`, `prompt_tokens`).
_TOKEN_COUNT_SUFFIXES = ("tokens", "token_count", "token_usage", "token_limit")


def is_secret_key(key: str, secret_keys: frozenset[str] = DEFAULT_SECRET_KEYS) -> bool:
    normalized = key.strip().lower().replace("-", "_")
    if normalized in secret_keys:
        return True
    if normalized.endswith(_TOKEN_COUNT_SUFFIXES):
        return False
    return any(marker in normalized for marker in SECRET_KEY_MARKERS)


def redact(value: Any, secret_keys: frozenset[str] = DEFAULT_SECRET_KEYS) -> Any:
    """A copy of `value` with the values of secret-looking mapping keys replaced by `***`.

    Recurses through mappings, lists and tuples. Keys are compared case-insensitively, with
    `-` read as `_`, against `secret_keys` exactly and `SECRET_KEY_MARKERS` as substrings.
    A `None` value stays `None`: it tells that no secret is set, not what it is.
    """
    if isinstance(value, Mapping):
        return {
            key: (
                REDACTED
                if item is not None and is_secret_key(str(key), secret_keys)
                else redact(item, secret_keys)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, secret_keys) for item in value]
    if isinstance(value, tuple):
        return tuple(redact(item, secret_keys) for item in value)
    return value
