"""Dependencies for what the app holds in its state, built once in ``create_app``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from taskgate.settings import Settings


# async: FastAPI runs a plain ``def`` dependency in a worker thread, a costly hop here.
async def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(app_settings)]
