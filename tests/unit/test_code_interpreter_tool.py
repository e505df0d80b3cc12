"""The code_interpreter tool's pure parts: arguments, outputs, replay and message additions."""

from __future__ import annotations

import json
from typing import Any

from vtai.server.tools.code_interpreter.outputs import CallOutputs, model_text
from vtai.server.tools.code_interpreter.pool import Pool
from vtai.server.tools.code_interpreter.sandbox import Unsandboxed
from vtai.server.tools.code_interpreter.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.tool import CodeInterpreterTool, parse_code


def tool(tmp_path: Any) -> CodeInterpreterTool:
    settings = CodeInterpreterSettings()
    return CodeInterpreterTool(settings, Pool(settings, Unsandboxed(settings), tmp_path))


def test_parse_code() -> None:
    assert parse_code('{"code": "x = 1"}') == "x = 1"
    assert parse_code("print('raw')") == "print('raw')"  # not JSON: the code itself
    assert parse_code('"1 + 1"') == "1 + 1"
    assert parse_code("42") == "42"
    assert parse_code('{"script": "x"}') is None
    assert parse_code("  ") is None


def test_outputs_stream_and_truncate() -> None:
    sent: list[dict[str, Any]] = []
    outputs = CallOutputs(sent.append, max_chars=10)
    outputs.text("0123456")
    outputs.image("file-a")
    outputs.text("789abcdef")
    outputs.note("Traceback\n")
    items = outputs.finish()
    assert items == [
        {"type": "logs", "logs": "0123456789\n[... 6 more characters of output not shown ...]"
                                 "\nTraceback\n"},
        {"type": "image", "image": {"file_id": "file-a"}}]
    pieces = [d["code_interpreter"]["outputs"][0] for d in sent]
    assert "".join(p["logs"] for p in pieces if p["index"] == 0) == items[0]["logs"]
    assert [p for p in pieces if p["index"] == 1] == [{"index": 1, **items[1]}]
    assert model_text(items) == items[0]["logs"] + "[image file-a displayed to the user]"
    assert model_text([]) == "(no output)"


def test_definition_and_replay(tmp_path: Any) -> None:
    t = tool(tmp_path)
    fn = t.definition({"type": "code_interpreter"})["function"]
    assert fn["name"] == "code_interpreter" and fn["parameters"]["required"] == ["code"]
    call = {"id": "call_1", "type": "code_interpreter", "code_interpreter": {
        "input": "print('é')", "outputs": [{"type": "logs", "logs": "é\n"}]}}
    arguments, output = t.replay(call)
    assert json.loads(arguments) == {"code": "print('é')"} and output == "é"
    assert t.initial_call("call_1", "1+1")["code_interpreter"] == {"input": "1+1",
                                                                  "outputs": []}


def test_message_additions(tmp_path: Any) -> None:
    t = tool(tmp_path)
    t._written["call_1"] = {"/mnt/data/out.csv": "file-out"}
    calls = [{"id": "call_1", "type": "code_interpreter", "code_interpreter": {
        "input": "", "outputs": [{"type": "image", "image": {"file_id": "file-img"}}]}}]
    text = ("See sandbox:/mnt/data/out.csv. And [x](sandbox:/mnt/data/out.csv), "
            "not sandbox:/mnt/data/other.csv")
    added = t.message_additions(text, calls)
    assert added.parts == [{"type": "image_file", "image_file": {"file_id": "file-img"}}]
    assert [(a["text"], text[a["start_index"]:a["end_index"]], a["file_path"]["file_id"])
            for a in added.annotations] == [("sandbox:/mnt/data/out.csv",) * 2 + ("file-out",)] * 2
    assert t.message_additions(text, calls).annotations == []  # used once
