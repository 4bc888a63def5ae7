"""Webhook signatures: Standard Webhooks (standardwebhooks.com) and plain HMAC-SHA256.

Standard Webhooks: the signed content is `f"{webhook-id}.{webhook-timestamp}.{body}"`, the
`webhook-signature` header holds space-separated `v1,<base64 HMAC-SHA256>` entries (several
during a secret rotation), and the timestamp must be within a tolerance of now, both ways.

Secrets: a `whsec_` secret is `whsec_` + base64 of the key bytes, as the specification's
libraries read it; any other secret is used as its UTF-8 bytes. The plain HMAC scheme
(`X-Webhook-Signature: sha256=<hex>`, GitHub style) always keys with the secret's UTF-8
bytes, as such senders do, prefix included.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
DEFAULT_TOLERANCE_SECONDS = 300

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class SignatureError(Exception):
    """A webhook signature does not verify; `reason` is a short code safe to log."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def generate_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (see the module docstring)."""
    if not secret:
        raise SignatureError("invalid_secret", "the signing secret is empty")
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(
            "invalid_secret", "a whsec_ secret must be base64 after whsec_"
        ) from exc
    if not key:
        raise SignatureError("invalid_secret", "the signing secret is empty")
    return key


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_headers(secret: str, msg_id: str, body: bytes, now: float) -> dict[str, str]:
    timestamp = int(now)
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: sign_standard(secret, msg_id, timestamp, body),
    }


def verify_standard(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise `SignatureError` unless `body` carries a valid, fresh Standard Webhooks signature.

    `headers` may be any mapping; names are matched case-insensitively. Replays within the
    tolerance are the caller's to refuse, by remembering `webhook-id`.
    """
    msg_id = _header(headers, HEADER_ID)
    timestamp_text = _header(headers, HEADER_TIMESTAMP)
    signatures = _header(headers, HEADER_SIGNATURE)
    missing = [
        name
        for name, value in (
            (HEADER_ID, msg_id),
            (HEADER_TIMESTAMP, timestamp_text),
            (HEADER_SIGNATURE, signatures),
        )
        if not value
    ]
    if missing or msg_id is None or timestamp_text is None or signatures is None:
        raise SignatureError("missing_headers", f"missing header(s): {', '.join(missing)}")

    timestamp_text = timestamp_text.strip()
    if not timestamp_text.isascii() or not timestamp_text.isdigit():
        raise SignatureError("invalid_timestamp", "webhook-timestamp is not an integer")
    timestamp = int(timestamp_text)
    if timestamp < now - tolerance_seconds:
        raise SignatureError("timestamp_too_old", "webhook-timestamp is too old")
    if timestamp > now + tolerance_seconds:
        raise SignatureError("timestamp_too_new", "webhook-timestamp is in the future")

    expected = sign_standard(secret, msg_id, timestamp, body).encode()
    matched = False
    for candidate in signatures.split():
        version, _, _ = candidate.partition(",")
        if version != "v1":
            continue  # other schemes (v1a: ed25519) are not ours to check
        # No early exit: every entry is compared in constant time.
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("no_matching_signature", "no webhook-signature entry matches")


def verify_hmac_sha256(secret: str, header_value: str | None, body: bytes) -> None:
    """Raise `SignatureError` unless `header_value` (`sha256=<hex>` or bare hex) matches
    the HMAC-SHA256 of `body` keyed with the secret's UTF-8 bytes."""
    if not secret:
        raise SignatureError("invalid_secret", "the signing secret is empty")
    if not header_value or not header_value.strip():
        raise SignatureError("missing_headers", "missing signature header")
    value = header_value.strip()
    scheme, sep, digest = value.partition("=")
    if sep:
        if scheme.strip().lower() != "sha256":
            raise SignatureError("malformed_signature", f"unsupported scheme {scheme.strip()!r}")
        value = digest.strip()
    value = value.lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise SignatureError("malformed_signature", "expected 64 hex digits of HMAC-SHA256")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), value.encode()):
        raise SignatureError("no_matching_signature", "the signature does not match the body")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, item in headers.items():
        if key.lower() == name:
            return item
    return None
