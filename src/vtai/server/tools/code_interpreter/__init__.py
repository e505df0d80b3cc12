"""The code_interpreter built-in tool: model-written Python run in stateful Jupyter kernels,
one per thread, each in a sandbox with no network and limits on time, memory, processes and
disk. See docs/code-interpreter.md."""

from __future__ import annotations

from vtai.server.tools.code_interpreter.pool import Pool
from vtai.server.tools.code_interpreter.sandbox import build_sandbox
from vtai.server.tools.code_interpreter.tool import CodeInterpreterTool
from vtai.server.tools.registry import PluginEnv, ToolPlugin


def plugin(env: PluginEnv) -> ToolPlugin:
    settings = env.settings.code
    pool = Pool(settings, build_sandbox(settings), env.settings.data_dir / "code")
    return ToolPlugin(tool=CodeInterpreterTool(settings, pool), start=pool.start,
                      stop=pool.stop)
