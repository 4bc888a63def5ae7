"""What the task benchmarks share: a migrated scratch database and an API key on a server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from bench.harness import python_env

ADMIN_PASSWORD = "bench-admin-password"


def taskgate_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return python_env(
        {
            "TASKGATE_DATA_DIR": str(data_dir),
            "TASKGATE_DATABASE__URL": database_url,
            "TASKGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "TASKGATE_AUTH__JWT_SECRET": "bench-secret-" + "x" * 40,
            "TASKGATE_LOG_LEVEL": "WARNING",
            # A budget the load cannot spend: the limiter still runs on every request.
            "TASKGATE_RATE_LIMIT__STANDARD": "1000000000/minute",
            "TASKGATE_RATE_LIMIT__PROJECT": "1000000000/minute",
        }
    )


def migrate(env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "taskgate.cli", "migrate"]
    subprocess.run(command, env=env, check=True, capture_output=True)


def api_key(base: str) -> str:
    """A fresh API key of the first admin (created by ``serve`` from the password above)."""
    with httpx.Client(base_url=base, timeout=10) as client:
        login = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access']}"}
        created = client.post("/api/v1/api-keys", json={"name": "bench"}, headers=headers)
        created.raise_for_status()
        key: str = created.json()["key"]
        return key
