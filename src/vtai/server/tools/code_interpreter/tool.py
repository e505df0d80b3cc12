"""The ``code_interpreter`` built-in tool: what the model sees, and one call from the model's
code to the step's ``code_interpreter`` object, the Files it made, and the message parts."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections import OrderedDict
from typing import Any

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.base import InputFile, MessageAdditions, ToolContext, ToolResult
from vtai.server.tools.code_interpreter import files
from vtai.server.tools.code_interpreter.backend import CodeSession, CodeSessions, Unavailable
from vtai.server.tools.code_interpreter.copyout import CopyOut
from vtai.server.tools.code_interpreter.gateway_client import GatewayError
from vtai.server.tools.code_interpreter.kernel import KernelStartError, Output
from vtai.server.tools.code_interpreter.outputs import ALLOWANCE, CallOutputs, model_text
from vtai.server.tools.code_interpreter.sandbox import SANDBOX_DATA

log = logging.getLogger("vtai.tools.code_interpreter")

FUNCTION_NAME = "code_interpreter"
OUTPUT_PURPOSE = "assistants_output"
IMAGE_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg"}
_SANDBOX_LINK = re.compile(r"sandbox:(/mnt/data/[^\s()\[\]<>\"'`]+)")
_REMEMBERED_CALLS = 10_000  # calls whose written files wait for their message


def parse_code(arguments: str) -> str | None:
    """The code of a call: {"code": "..."} as OpenAI's tool took it, or the raw code that
    some models send instead of JSON."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments if arguments.strip() else None
    if isinstance(value, dict):
        code = value.get("code")
        return code if isinstance(code, str) else None
    return value if isinstance(value, str) else arguments


class CodeInterpreterTool:
    type = "code_interpreter"

    def __init__(self, settings: CodeInterpreterSettings, pool: CodeSessions) -> None:
        self.settings = settings
        self.pool = pool
        # call id -> {"/mnt/data/out.csv": file id}: files written by calls whose message
        # is not closed yet (the step's call object has no place for them).
        self._written: OrderedDict[str, dict[str, str]] = OrderedDict()

    def definition(self, tool: dict[str, Any]) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": FUNCTION_NAME,
            "description": (
                "Runs Python code in a stateful Jupyter kernel: variables, imports and files "
                "persist between calls in this conversation. Files the user attached are in "
                "/mnt/data (list it to see them); write files for the user there and link "
                "them as sandbox:/mnt/data/<name>. Charts shown with matplotlib "
                "(plt.show()) are displayed to the user. numpy, pandas, matplotlib, scipy, "
                "openpyxl and pillow are available; there is no internet access. A call may "
                "run at most "
                f"{self.settings.timeout:g} seconds."),
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string",
                                        "description": "The Python code to run."}},
                "required": ["code"],
            },
        }}

    def initial_call(self, call_id: str, arguments: str) -> dict[str, Any]:
        return {"id": call_id, "type": "code_interpreter", "code_interpreter": {
            "input": parse_code(arguments) or "", "outputs": []}}

    async def call(self, ctx: ToolContext, call_id: str, arguments: str) -> ToolResult:
        code = parse_code(arguments)
        outputs = CallOutputs(ctx.emit, self.settings.max_output_chars)
        if code is None:
            outputs.note("The call has no Python code to run: pass it as the `code` "
                         "argument.")
        else:
            try:
                session = await self.pool.session(ctx.project, ctx.session)
                async with session.lock:
                    try:
                        await self._run(ctx, session, call_id, code, outputs)
                    finally:
                        await session.save()
            except (Unavailable, KernelStartError, GatewayError, OSError) as err:
                log.warning("code interpreter call %s failed: %s", call_id, err)
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                outputs.note(f"Code execution is unavailable: {reason}")
        items = outputs.finish()
        call = {"id": call_id, "type": "code_interpreter",
                "code_interpreter": {"input": code or "", "outputs": items}}
        return ToolResult(call=call, output=model_text(items, outputs.limit))

    async def _run(self, ctx: ToolContext, session: CodeSession, call_id: str, code: str,
                   outputs: CallOutputs) -> None:
        revived = await session.revive()
        if revived:
            outputs.note(revived + "\n")
        for problem in await self._place_inputs(ctx, session):
            outputs.note(problem + "\n")
        before = await session.snapshot()
        copies = CopyOut(self.settings, session.state)

        async def sink(output: Output) -> None:
            if output.image is not None:
                await self._copy_image(ctx, call_id, output.image, copies, outputs)
            elif output.traceback:
                outputs.traceback(output.text)
            else:
                outputs.text(output.text)

        try:
            note = await session.execute(code, sink)
        except asyncio.CancelledError:
            session.interrupt()  # the run was cancelled: stop the code too
            raise
        if note:
            outputs.note(note + "\n")
        _note(outputs, copies.extra_images())
        after = await session.snapshot()
        written = await self._copy_written(ctx, session, files.written(before, after), copies,
                                           outputs)
        if written:
            self.remember_written(call_id, written)

    def remember_written(self, call_id: str, written: dict[str, str]) -> None:
        """Files a call wrote (sandbox path -> file id), for ``message_additions`` to link
        when the message that names them closes; the oldest calls' are forgotten first."""
        self._written[call_id] = written
        while len(self._written) > _REMEMBERED_CALLS:
            self._written.popitem(last=False)

    async def _copy_image(self, ctx: ToolContext, call_id: str, image: tuple[str, bytes],
                          copies: CopyOut, outputs: CallOutputs) -> None:
        """A displayed image becomes a File and an ``image`` output, within the bounds."""
        media, content = image
        number = copies.count_image()
        if number is None:
            return
        refused = copies.refusal(f"image {number}", len(content))
        if refused:
            _note(outputs, refused)
            return
        stored = await ctx.files.create_from_bytes(
            ctx.project, f"{call_id}_{number}{IMAGE_SUFFIXES[media]}", OUTPUT_PURPOSE, content)
        copies.copied(len(content))
        outputs.image(stored["id"])

    async def _copy_written(self, ctx: ToolContext, session: CodeSession, written: list[str],
                            copies: CopyOut, outputs: CallOutputs) -> dict[str, str]:
        """Files the call wrote become Files (or go where ``ctx.keep_written`` keeps them),
        within the bounds: their sandbox paths and ids."""
        copied: dict[str, str] = {}
        for relative in written[:copies.max_files]:
            try:
                content = await session.read(relative, copies.room())
            except files.TooBig as big:
                _note(outputs, copies.refusal(relative, big.size))
                continue
            if content is None:
                continue
            if ctx.keep_written is not None:
                kept = await ctx.keep_written(relative, content)
                session.state.placed[kept] = relative  # (it is there already)
            else:
                kept = (await ctx.files.create_from_bytes(
                    ctx.project, relative.rsplit("/", 1)[-1], OUTPUT_PURPOSE, content))["id"]
            copies.copied(len(content))
            copied[f"{SANDBOX_DATA}/{relative}"] = kept
        _note(outputs, copies.extra_files(len(written)))
        return copied

    async def _place_inputs(self, ctx: ToolContext, session: CodeSession) -> list[str]:
        """Copy the call's input files not yet in the session into its /mnt/data, under
        their filenames; returns what went wrong, for the logs."""
        placed = session.state.placed
        inputs = await ctx.input_files() if ctx.input_files is not None else []
        wanted = [file_id for file_id in ctx.input_file_ids if file_id not in placed]
        if wanted:
            async with ctx.db.read() as conn:
                found = {file_id: await ctx.files.get(conn, file_id, ctx.project)
                         for file_id in wanted}
            taken = set(placed.values())
            for file_id, file in found.items():
                if file is None:
                    continue  # deleted since it was attached
                name = files.safe_name(file["filename"], file_id)
                if name in taken:
                    name = f"{file_id}-{name}"
                taken.add(name)
                inputs.append(InputFile(file_id, name,
                                        functools.partial(ctx.files.open, file_id)))
        problems = []
        for item in inputs:
            if item.key in placed:
                continue
            try:
                await session.upload(item.name, await item.open())
            except (OSError, GatewayError, FileNotFoundError) as err:
                reason = getattr(err, "strerror", None) or err
                problems.append(f"Could not put {item.name} in /mnt/data: {reason}")
                continue
            placed[item.key] = item.name
        return problems

    def replay(self, call: dict[str, Any]) -> tuple[str, str]:
        details = call["code_interpreter"]
        # Calls stored before logs were bounded are cut as a new call's logs would be.
        limit = self.settings.max_output_chars + ALLOWANCE
        return (json.dumps({"code": details["input"]}, ensure_ascii=False),
                model_text(details["outputs"], limit))

    def message_additions(self, text: str, calls: list[dict[str, Any]]) -> MessageAdditions:
        """Images the calls displayed become ``image_file`` parts; links to files they wrote
        (``sandbox:/mnt/data/out.csv``) become ``file_path`` annotations."""
        parts = [{"type": "image_file", "image_file": {"file_id": item["image"]["file_id"]}}
                 for call in calls for item in call["code_interpreter"]["outputs"]
                 if item["type"] == "image"]
        written: dict[str, str] = {}
        for call in calls:
            written.update(self._written.pop(call["id"], {}))
        annotations = []
        for match in _SANDBOX_LINK.finditer(text):
            path = match[1]
            if path not in written:
                path = path.rstrip(".,;:!?")  # the end of a sentence, not of the name
            if path in written:
                end = match.start(1) + len(path)
                annotations.append({
                    "type": "file_path", "text": text[match.start():end],
                    "start_index": match.start(), "end_index": end,
                    "file_path": {"file_id": written[path]}})
        return MessageAdditions(annotations=annotations, parts=parts)


def _note(outputs: CallOutputs, note: str | None) -> None:
    if note:
        outputs.note(note + "\n")
