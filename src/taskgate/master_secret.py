"""The deployment's master secret: signs access tokens and cursors, derives storage keys."""

from __future__ import annotations

import os
import secrets as _random

from taskgate.data_dir import private_dir, private_file
from taskgate.settings import Settings


def master_secret(settings: Settings) -> str:
    """The configured JWT secret, or one generated once and kept in the data directory.

    Several processes (API replicas, workers) must share it: set TASKGATE_AUTH__JWT_SECRET
    when they do not share a data directory.
    """
    if settings.auth.jwt_secret is not None:
        return settings.auth.jwt_secret.get_secret_value()
    path = private_dir(settings.data_dir) / "secret.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        private_file(path)
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        value = _random.token_urlsafe(48)
        handle.write(value)
    return value
