"""The code_interpreter built-in tool: model-written Python run in stateful Jupyter kernels,
one per session (a thread's, a container's): local kernels in sandboxes with no network and
limits on time, memory, processes and disk, or kernels on a Jupyter gateway. See
docs/code-interpreter.md; backend.py is what a session offers, whatever runs it."""

from __future__ import annotations

from vtai.server.tools.code_interpreter.backend import CodeSessions
from vtai.server.tools.code_interpreter.gateway_pool import GatewayPool
from vtai.server.tools.code_interpreter.pool import Pool
from vtai.server.tools.code_interpreter.sandbox import build_sandbox
from vtai.server.tools.code_interpreter.session_rows import SessionRows
from vtai.server.tools.code_interpreter.tool import CodeInterpreterTool
from vtai.server.tools.registry import PluginEnv, ToolPlugin


def code_sessions(env: PluginEnv) -> CodeSessions:
    """The process's code sessions, on the configured backend."""
    settings = env.settings.code
    rows = SessionRows(env.db)
    if settings.backend == "gateway":
        return GatewayPool(settings, rows)
    return Pool(settings, build_sandbox(settings), env.settings.data_dir / "code", rows)


def plugin(env: PluginEnv) -> ToolPlugin:
    sessions = code_sessions(env)
    return ToolPlugin(tool=CodeInterpreterTool(env.settings.code, sessions),
                      start=sessions.start, stop=sessions.stop)
