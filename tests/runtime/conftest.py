"""Sandbox fixtures: a scratch dir the sandbox uid can reach, and a uid of its own per test."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskgate.runtime.sandbox import (
    BwrapSandbox,
    ProcessSandbox,
    RunAs,
    Sandbox,
)
from tests.runtime.sandbox_support import IS_ROOT, needs_bwrap


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """Scratch space the sandbox uid can traverse (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="taskgate-sandbox-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def run_as() -> RunAs | None:
    """A uid of its own for every test, so process counts and leftovers never mix."""
    if not IS_ROOT:
        return None
    uid = 200_000 + secrets.randbelow(1_000_000)
    return RunAs(uid, uid)


@pytest.fixture
def bwrap(run_as: RunAs | None) -> BwrapSandbox:
    return BwrapSandbox(run_as=run_as)


@pytest.fixture
def process(run_as: RunAs | None) -> ProcessSandbox:
    return ProcessSandbox(run_as=run_as)


@pytest.fixture(params=[pytest.param("bwrap", marks=needs_bwrap), "process"])
def sandbox(request: pytest.FixtureRequest, run_as: RunAs | None) -> Sandbox:
    if request.param == "bwrap":
        return BwrapSandbox(run_as=run_as)
    return ProcessSandbox(run_as=run_as)
