"""The built-in tools a server runs, each from its package's ``plugin`` function (a test can
put stand-ins in their place before the server starts)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vtai.server.providers.routing import Providers
from vtai.server.retrieval.engine import Retrieval
from vtai.server.settings import Settings
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore
from vtai.server.tools.base import BuiltinTool

log = logging.getLogger("vtai.tools")

PLUGIN_MODULES = ("vtai.server.tools.code_interpreter", "vtai.server.tools.file_search")


@dataclass
class ToolPlugin:
    """A built-in tool; ``start`` and ``stop`` run in the processes that execute runs."""

    tool: BuiltinTool
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None


@dataclass
class PluginEnv:
    """What a tool package may use to build its tool."""

    settings: Settings
    db: Database
    files: FileStore
    providers: Providers
    retrieval: Retrieval


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
