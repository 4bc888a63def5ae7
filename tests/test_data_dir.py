"""The data directory and the files in it are their owner's only, on either database."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

from taskgate.settings import Settings
from tests.support.clients import running_app


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_data_directory_and_its_secret_are_private(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    data = tmp_path / "fresh" / "data"
    settings = settings_factory(auth={"jwt_secret": None}).model_copy(update={"data_dir": data})
    async with running_app(settings) as (_, client):
        assert (await client.get("/health")).status_code == 200
        assert _mode(data) == 0o700
        assert _mode(data / "secret.key") == 0o600


async def test_an_open_secret_left_by_an_older_version_is_closed(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "secret.key").write_text("an-older-secret-" + "x" * 40)
    (data / "secret.key").chmod(0o644)
    settings = settings_factory(auth={"jwt_secret": None}).model_copy(update={"data_dir": data})
    async with running_app(settings) as (_, client):
        assert (await client.get("/health")).status_code == 200
        assert _mode(data / "secret.key") == 0o600
        # An existing directory keeps the mode its operator gave it.
        assert _mode(data) == 0o755
