"""Stand-in built-in tools for UI tests, until the real ones are in the server.

The code interpreter runs the code with this Python, returns what it printed, and makes one
PNG. File search "finds" every file attached to the thread for file_search, and turns each
【...】 mark in the answer into a citation of the next file it found. Their steps and messages
have OpenAI's shapes, made by the real executor."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import sys
import zlib
from typing import Any

from sqlalchemy import select

from vtai.server.store import tables
from vtai.server.tools.base import MessageAdditions, ToolContext, ToolResult
from vtai.server.tools.registry import PluginEnv, ToolPlugin


def chart_png(width: int = 160, height: int = 90) -> bytes:
    """A small bar chart, so a screenshot shows that the image arrived."""
    heights = [30, 55, 80, 45, 70]
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            bar = x // 32
            inside = x % 32 > 6 and height - y <= heights[bar]
            row += bytes((40, 120, 220) if inside else (250, 250, 250))
        rows.append(b"\x00" + bytes(row))
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", body)
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def _code(arguments: str) -> str:
    try:
        return str(json.loads(arguments or "{}").get("code", ""))
    except ValueError:
        return arguments


SANDBOX_PATH = re.compile(r"/mnt/data/[\w.-]*\w")
SANDBOX_LINK = re.compile(r"sandbox:(/mnt/data/[\w.-]*\w)")


class StandInCodeInterpreter:
    """Also "writes" each /mnt/data/NAME file the code names (as a file of the server), and
    a ``sandbox:`` link to one in the answer becomes a file_path annotation, as the real
    tool does."""

    type = "code_interpreter"

    def __init__(self) -> None:
        self.written: dict[str, dict[str, str]] = {}  # call id -> {path: file id}

    def definition(self, tool: dict[str, Any]) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": "python", "description": "Run Python code and see what it prints.",
            "parameters": {"type": "object", "properties": {"code": {"type": "string"}},
                           "required": ["code"]}}}

    def initial_call(self, call_id: str, arguments: str) -> dict[str, Any]:
        return {"id": call_id, "type": "code_interpreter",
                "code_interpreter": {"input": _code(arguments), "outputs": []}}

    async def call(self, ctx: ToolContext, call_id: str, arguments: str) -> ToolResult:
        code = _code(arguments)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        printed, _ = await asyncio.wait_for(proc.communicate(), 30)
        logs = printed.decode(errors="replace")
        image = await ctx.files.create_from_bytes(ctx.project, "chart.png", "assistants",
                                                  chart_png())
        for path in dict.fromkeys(SANDBOX_PATH.findall(code)):
            made = await ctx.files.create_from_bytes(
                ctx.project, path, "assistants_output", f"made by the code: {path}\n".encode())
            self.written.setdefault(call_id, {})[path] = made["id"]
        outputs = [{"type": "logs", "logs": logs},
                   {"type": "image", "image": {"file_id": image["id"]}}]
        ctx.emit({"code_interpreter": {"outputs": outputs}})
        return ToolResult(call={"id": call_id, "type": "code_interpreter",
                                "code_interpreter": {"input": code, "outputs": outputs}},
                          output=logs)

    def replay(self, call: dict[str, Any]) -> tuple[str, str]:
        code = call["code_interpreter"]
        logs = "".join(o.get("logs", "") for o in code["outputs"] if o["type"] == "logs")
        return json.dumps({"code": code["input"]}), logs

    def message_additions(self, text: str, calls: list[dict[str, Any]]) -> MessageAdditions:
        written = {path: file_id for call in calls
                   for path, file_id in self.written.get(call["id"], {}).items()}
        annotations = [{"type": "file_path", "text": link.group(), "start_index": link.start(),
                        "end_index": link.end(), "file_path": {"file_id": written[link[1]]}}
                       for link in SANDBOX_LINK.finditer(text) if link[1] in written]
        return MessageAdditions(annotations=annotations, parts=[
            {"type": "image_file", "image_file": {"file_id": o["image"]["file_id"]}}
            for call in calls for o in call["code_interpreter"]["outputs"]
            if o["type"] == "image"])


class StandInFileSearch:
    type = "file_search"

    def definition(self, tool: dict[str, Any]) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": "file_search", "description": "Search the user's documents.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                           "required": ["query"]}}}

    def initial_call(self, call_id: str, arguments: str) -> dict[str, Any]:
        return {"id": call_id, "type": "file_search", "file_search": {"results": []}}

    async def call(self, ctx: ToolContext, call_id: str, arguments: str) -> ToolResult:
        results = []
        f = tables.vector_store_files
        async with ctx.db.read() as conn:
            file_ids = list(dict.fromkeys((await conn.execute(select(f.c.id).where(
                f.c.vector_store_id.in_(await ctx.store_ids())))).scalars()))
        for file_id in file_ids:  # (the stores' files, whole: the stand-in's search)
            async with ctx.db.read() as conn:
                name = (await ctx.files.get(conn, file_id, ctx.project) or {})["filename"]
            text = (await ctx.files.read(file_id)).decode(errors="replace")
            results.append({"file_id": file_id, "file_name": name, "score": 0.9,
                            "content": [{"type": "text", "text": text}]})
        call = {"id": call_id, "type": "file_search", "file_search": {
            "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0},
            "results": results}}
        return ToolResult(call=call, output=json.dumps(results))

    def replay(self, call: dict[str, Any]) -> tuple[str, str]:
        return "{}", json.dumps(call["file_search"]["results"])

    def message_additions(self, text: str, calls: list[dict[str, Any]]) -> MessageAdditions:
        found = [r["file_id"] for call in calls for r in call["file_search"]["results"]]
        annotations = []
        for number, mark in enumerate(re.finditer(r"【[^】]*】", text)):
            if found:
                annotations.append({
                    "type": "file_citation", "text": mark.group(), "start_index": mark.start(),
                    "end_index": mark.end(),
                    "file_citation": {"file_id": found[number % len(found)]}})
        return MessageAdditions(annotations=annotations)


def plugin(env: PluginEnv) -> ToolPlugin:
    return ToolPlugin(tool=StandInCodeInterpreter())


def file_search_plugin(env: PluginEnv) -> ToolPlugin:
    return ToolPlugin(tool=StandInFileSearch())


if __name__ == "__main__":  # `vtai serve` with these tools as its built-in tools
    # The real packages stay (the engine imports their other modules); only the function
    # the registry builds each tool with is swapped.
    import vtai.server.tools.code_interpreter as code_interpreter
    import vtai.server.tools.file_search as file_search
    from vtai.cli import app

    code_interpreter.plugin = plugin  # type: ignore[assignment]
    file_search.plugin = file_search_plugin  # type: ignore[assignment]

    app()
