"""The file_search tool in runs, on the vector-store engine (server/retrieval). See
docs/file-search.md."""

from __future__ import annotations

from vtai.server.tools.file_search.tool import FileSearchTool
from vtai.server.tools.registry import PluginEnv, ToolPlugin


def plugin(env: PluginEnv) -> ToolPlugin:
    return ToolPlugin(tool=FileSearchTool(env.retrieval))
