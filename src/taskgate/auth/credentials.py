"""Secrets we hand out or receive: passwords, API keys, refresh tokens, access JWTs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from taskgate.errors import Unauthorized

API_KEY_PREFIX = "tg_"
_hasher = PasswordHasher()  # Argon2id with the library's recommended parameters
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (pass None for a missing one)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    key: str
    prefix: str
    key_hash: str


def generate_api_key() -> NewApiKey:
    """``tg_<lookup prefix>_<256 random bits>``; only the hash is stored."""
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=prefix, key_hash=sha256_hex(key))


def parse_api_key(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    prefix, sep, rest = key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 12 or len(rest) < 40:
        return None
    return prefix


def api_key_matches(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(sha256_hex(key), key_hash)


def generate_refresh_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(48)
    return token, sha256_hex(token)


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    auth_version: int
    expires_at: int


class AccessTokens:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def issue(self, user_id: uuid.UUID, auth_version: int, now: datetime) -> str:
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "ver": auth_version,
            "typ": "access",
            "iat": int(now.timestamp()),
            "exp": now + timedelta(seconds=self.ttl_seconds),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
            if claims.get("typ") != "access":
                raise Unauthorized("Not an access token.")
            return AccessClaims(uuid.UUID(claims["sub"]), int(claims["ver"]), int(claims["exp"]))
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Access token expired.") from exc
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise Unauthorized("Invalid access token.") from exc
