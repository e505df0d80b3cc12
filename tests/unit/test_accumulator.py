"""The chunk accumulator on every style of tool-call stream, and on exchanges recorded with
real model servers (tests/fixtures/provider-streams)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vtai.server.runs.accumulator import (
    Accumulator,
    CallNamed,
    CallOpened,
    CallPiece,
    Piece,
    Text,
    merge_name,
)

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "provider-streams"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def call_chunk(index: int | None, name: str | None = None, arguments: str | None = None,
               call_id: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"function": {}}
    if index is not None:
        call["index"] = index
    if call_id is not None:
        call["id"] = call_id
    if name is not None:
        call["function"]["name"] = name
    if arguments is not None:
        call["function"]["arguments"] = arguments
    return chunk({"tool_calls": [call]})


def feed_all(chunks: list[dict[str, Any]]) -> tuple[Accumulator, list[Piece]]:
    answer = Accumulator()
    pieces = [piece for c in chunks for piece in answer.feed(c)]
    return answer, pieces + answer.close()


def calls(answer: Accumulator) -> list[tuple[str, str]]:
    return [(call.name, call.arguments) for call in answer.calls]


def test_merge_name_reads_each_style() -> None:
    assert merge_name("", "get_weather") == "get_weather"
    assert merge_name("get_", "weather") == "get_weather"  # in pieces
    assert merge_name("get_weather", "get_weather") == "get_weather"  # repeated whole
    assert merge_name("get_w", "get_weather") == "get_weather"  # whole as it grows
    assert merge_name("get_weather", "") == "get_weather"


@pytest.mark.parametrize("style", ["once", "pieces", "repeated"])
def test_a_call_streamed_in_any_style_has_its_name_once(style: str) -> None:
    names = {"once": ["code_interpreter", None, None],
             "pieces": ["code_", "interpreter", None],
             "repeated": ["code_interpreter"] * 3}[style]
    arguments = ["", '{"code":', ' "1+1"}'] if style != "pieces" else ["", "", '{"code": "1+1"}']
    chunks = [call_chunk(0, name, args, "call_a" if n == 0 or style == "repeated" else None)
              for n, (name, args) in enumerate(zip(names, arguments, strict=True))]
    answer, pieces = feed_all([chunk({"role": "assistant", "content": None}), *chunks,
                               chunk({}, "tool_calls")])
    assert calls(answer) == [("code_interpreter", '{"code": "1+1"}')]
    assert [type(p) for p in pieces].count(CallNamed) == 1
    assert answer.finish_reason == "tool_calls"
    streamed_names = "".join(p.name for p in pieces if isinstance(p, CallPiece))
    assert streamed_names == ""  # nothing added to the name once it was complete


def test_the_name_is_complete_when_the_arguments_begin() -> None:
    answer = Accumulator()
    assert [type(p) for p in answer.feed(call_chunk(0, "get_", "", "c1"))] == [CallOpened]
    assert answer.feed(call_chunk(0, "weather")) == []
    named = answer.feed(call_chunk(0, None, '{"city"'))
    assert named == [CallNamed(answer.calls[0])] and answer.calls[0].arguments == '{"city"'
    assert answer.feed(call_chunk(0, None, ': "Oslo"}')) == [
        CallPiece(answer.calls[0], ': "Oslo"}')]


def test_calls_numbered_from_one_or_sharing_an_index_stay_apart() -> None:
    answer, _ = feed_all([call_chunk(1, "f", "", "a"), call_chunk(1, None, '{"x":1}'),
                          call_chunk(2, "g", "", "b"), call_chunk(2, None, '{"y":2}')])
    assert calls(answer) == [("f", '{"x":1}'), ("g", '{"y":2}')]
    answer, pieces = feed_all([call_chunk(0, "f", "", "a"), call_chunk(0, None, '{"x":1}'),
                               call_chunk(0, "f", "", "b"), call_chunk(0, None, '{"x":2}')])
    assert calls(answer) == [("f", '{"x":1}'), ("f", '{"x":2}')]
    assert [type(p) for p in pieces].count(CallOpened) == 2


def test_a_new_call_completes_the_name_of_the_one_before() -> None:
    answer = Accumulator()
    answer.feed(call_chunk(0, "f", None, "a"))  # no arguments at all
    pieces = answer.feed(call_chunk(1, "g", None, "b"))
    assert [type(p) for p in pieces] == [CallNamed, CallOpened]
    assert pieces[0].call.name == "f"


def test_text_usage_and_legacy_function_call() -> None:
    answer, pieces = feed_all([
        chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"}),
        chunk({"function_call": {"name": "f", "arguments": "{}"}}),
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                  "total_tokens": 5, "prompt_tokens_details": {}}}])
    assert answer.text == "Hello" and [p for p in pieces if isinstance(p, Text)] == [
        Text("Hel"), Text("lo")]
    assert calls(answer) == [("f", "{}")]
    assert answer.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def _recorded(server: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (RECORDED / f"{server}.jsonl").read_text().splitlines()]


def _chunks(raw_sse: str) -> list[dict[str, Any]]:
    found = []
    for event in raw_sse.split("\n\n"):
        data = event.removeprefix("data: ").strip()
        if data and data != "[DONE]":
            found.append(json.loads(data))
    return found


@pytest.mark.parametrize("server", ["llama-cpp-python", "llama-server"])
def test_recorded_streams_of_real_servers(server: str) -> None:
    """Every streamed exchange recorded with llama-cpp-python's server and llama.cpp's
    llama-server: each call's name is the tool's name, once; text answers are their text."""
    exchanges = [e for e in _recorded(server) if e["status"] == 200]
    assert exchanges
    for exchange in exchanges:
        offered = {t["function"]["name"] for t in exchange["request"].get("tools") or []}
        answer, _ = feed_all(_chunks(exchange["response"]))
        if answer.calls:
            assert {call.name for call in answer.calls} <= offered, exchange["request"]
            for call in answer.calls:
                assert call.arguments and call.upstream_id.startswith("call_")
        else:
            assert answer.text.strip() and answer.finish_reason == "stop"


def test_chunks_of_unexpected_shapes_are_read_as_far_as_they_go() -> None:
    answer, _ = feed_all([
        {"choices": {"not": "a list"}}, {"choices": ["nor an object"]},
        {"choices": [{"delta": "text?"}]}, {"choices": [{"delta": {"tool_calls": 5}}]},
        {"choices": [{"delta": {"tool_calls": ["x", {"index": True, "function": "f"}]}}]},
        {"choices": [{"finish_reason": "stop"}]}, {"usage": "none"}])
    assert answer.finish_reason == "stop" and answer.usage is None
    assert [(c.name, c.arguments) for c in answer.calls] == [("", "")]
