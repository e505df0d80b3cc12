"""The UI's settings, from the environment (prefix ``VTAI_UI_``); ``vtai ui`` sets them."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class UISettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VTAI_UI_")

    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str = "unused"           # the server's key when it has keys configured
    assistant_id: str | None = None   # use this assistant instead of the saved or a new one
    model: str = "o3"                 # the model of an assistant the UI creates
    instructions: str = ("You are VT.ai, a helpful assistant. Use code interpreter for "
                         "calculations and data, and file search for the user's documents.")
    state_path: Path = Path.home() / ".vtai" / "ui" / "ui.json"
    reconnect_seconds: float = 120.0  # how long a lost stream waits for the server
    functions: str = ""               # comma-separated modules of @function_tool functions

    def function_modules(self) -> list[str]:
        return [name.strip() for name in self.functions.split(",") if name.strip()]
