"""The code_interpreter tool's pure parts: arguments, outputs, replay and message additions."""

from __future__ import annotations

import json
import re
from typing import Any

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.gateway_pool import GatewayPool
from vtai.server.tools.code_interpreter.outputs import (
    ALLOWANCE,
    CallOutputs,
    model_text,
    shorten,
)
from vtai.server.tools.code_interpreter.tool import CodeInterpreterTool, parse_code


def tool(tmp_path: Any) -> CodeInterpreterTool:
    settings = CodeInterpreterSettings()
    # (a pool that is never started: these parts run no code)
    return CodeInterpreterTool(settings, GatewayPool(settings, None))  # type: ignore[arg-type]


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
    assert model_text(items, 100) == items[0]["logs"] + "[image file-a displayed to the user]"
    assert model_text([], 100) == "(no output)"


def test_shorten_keeps_head_and_tail() -> None:
    assert shorten("abc", 3) == "abc"
    text = "H" * 500 + "m" * 10_000 + "T" * 500
    cut = shorten(text, 300)
    assert len(cut) == 300
    parts = re.fullmatch(r"(H+)\n\[\.\.\. (\d+) characters cut \.\.\.\]\n(T+)", cut)
    assert parts
    head, count, tail = parts.groups()
    assert len(head) + int(count) + len(tail) == len(text)
    assert abs(len(head) - len(tail)) <= 1
    assert shorten(text, 10) == "H" * 10  # no room for the line: the head only
    assert shorten(text, 0) == ""


def test_a_long_traceback_is_cut() -> None:
    outputs = CallOutputs(lambda _: None, max_chars=1000)
    outputs.traceback("Traceback: where\n" + "A" * 1_000_000 + "\nException: what\n")
    [logs] = outputs.finish()
    assert 990 <= len(logs["logs"]) <= 1000  # the count may have a digit less than sized for
    assert logs["logs"].startswith("Traceback: where\n")
    assert logs["logs"].endswith("\nException: what\n")
    assert "characters cut ...]" in logs["logs"]


def test_a_traceback_after_long_output_keeps_a_floor() -> None:
    outputs = CallOutputs(lambda _: None, max_chars=1000)
    outputs.text("x" * 5000)
    outputs.traceback("T" * 3000 + "the error\n")
    outputs.traceback("a second one\n")  # the floor is used up: only counted
    outputs.text("more")
    logs = outputs.finish()[0]["logs"]
    x, first, rest = logs.partition("\n[... 4000 more characters of output not shown ...]\n")
    assert x == "x" * 1000 and first
    assert rest.endswith("the error\n\n[... 17 more characters of output not shown ...]\n")
    assert len(rest) - len("\n[... 17 more characters of output not shown ...]\n") == 500


def test_logs_stay_within_their_limit() -> None:
    sent: list[str] = []
    outputs = CallOutputs(lambda d: sent.append(d["code_interpreter"]["outputs"][0]["logs"]),
                          max_chars=100)
    for _ in range(200):
        outputs.text("t" * 300)
        outputs.traceback("b" * 300)
        outputs.note("a note from the server " * 10 + "\n")
    logs = outputs.finish()[0]["logs"]
    assert len(logs) <= outputs.limit == 100 + ALLOWANCE
    assert "".join(sent) == logs


def test_model_text_cuts_logs_stored_unbounded() -> None:
    stored = [{"type": "logs", "logs": "head " + "A" * 100_000 + " tail"},
              {"type": "image", "image": {"file_id": "file-a"}}]
    text = model_text(stored, 1000)
    assert text.startswith("head ") and "characters cut" in text
    assert text.endswith(" tail[image file-a displayed to the user]")
    assert len(text) < 1100


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
    t.remember_written("call_1", {"/mnt/data/out.csv": "file-out"})
    calls = [{"id": "call_1", "type": "code_interpreter", "code_interpreter": {
        "input": "", "outputs": [{"type": "image", "image": {"file_id": "file-img"}}]}}]
    text = ("See sandbox:/mnt/data/out.csv. And [x](sandbox:/mnt/data/out.csv), "
            "not sandbox:/mnt/data/other.csv")
    added = t.message_additions(text, calls)
    assert added.parts == [{"type": "image_file", "image_file": {"file_id": "file-img"}}]
    assert [(a["text"], text[a["start_index"]:a["end_index"]], a["file_path"]["file_id"])
            for a in added.annotations] == [("sandbox:/mnt/data/out.csv",) * 2 + ("file-out",)] * 2
    assert t.message_additions(text, calls).annotations == []  # used once
