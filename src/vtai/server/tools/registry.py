"""The built-in tools a server runs, each from its package's ``plugin`` function."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter

from vtai.server.providers.routing import Providers
from vtai.server.settings import Settings
from vtai.server.store.blobs import BlobStore
from vtai.server.store.db import Database
from vtai.server.tools.base import BuiltinTool

log = logging.getLogger("vtai.tools")

PLUGIN_MODULES = ("vtai.server.tools.code_interpreter", "vtai.server.tools.file_search")


@dataclass
class ToolPlugin:
    """What a tool package adds to a server. ``routers`` serve in every process that serves
    HTTP; ``start`` and ``stop`` run in the processes that execute runs."""

    tool: BuiltinTool | None = None
    routers: list[APIRouter] = field(default_factory=list)
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None


@dataclass
class PluginEnv:
    """What a tool package may use to build its plugin."""

    settings: Settings
    db: Database
    blobs: BlobStore
    providers: Providers


def load_plugins(env: PluginEnv) -> list[ToolPlugin]:
    plugins = []
    for name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            log.info("built-in tool package %s is not present", name)
            continue
        plugins.append(module.plugin(env))
    return plugins
