"""Prompt building: message conversion, tool-call history and truncation."""

from __future__ import annotations

from typing import Any

from vtai.server import ids
from vtai.server.runs.images import image_file_ids, media_type
from vtai.server.runs.prompt import build_messages
from vtai.server.runs.tokens import estimate


def message(role: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"id": ids.new_id("msg_"), "role": role,
            "content": [{"type": "text", "text": {"value": text, "annotations": []}}], **extra}


def tool_step(run_id: str, call_id: str, output: str) -> dict[str, Any]:
    return {"id": ids.new_id("step_"), "run_id": run_id, "step_details": {
        "type": "tool_calls", "tool_calls": [{"id": call_id, "type": "function", "function": {
            "name": "f", "arguments": "{}", "output": output}}]}}


def run(**fields: Any) -> dict[str, Any]:
    return {"id": "run_current", "instructions": "Sys.", **fields}


def test_messages_in_order_with_instructions() -> None:
    msgs = [message("user", "a"), message("assistant", "b"), message("user", "c")]
    chat, tokens = build_messages(run(), msgs, [])
    assert chat == [{"role": "system", "content": "Sys."}, {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert tokens > 0


def test_images_become_vision_parts() -> None:
    msg = message("user", "look")
    msg["content"].append({"type": "image_url",
                           "image_url": {"url": "https://x/y.png", "detail": "low"}})
    chat, _ = build_messages(run(instructions=""), [msg], [])
    assert chat == [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]}]


def test_image_files_become_data_urls_or_say_they_are_missing() -> None:
    msg = message("user", "look")
    msg["content"] += [{"type": "image_file", "image_file": {"file_id": "file-a",
                                                             "detail": "high"}},
                       {"type": "image_file", "image_file": {"file_id": "file-gone"}}]
    chat, _ = build_messages(run(instructions=""), [msg], [],
                             images={"file-a": "data:image/png;base64,AAAA"})
    assert chat == [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA",
                                            "detail": "high"}},
        {"type": "text", "text": "[image file file-gone: not available]"}]}]


def test_an_answer_of_text_and_calls_is_replayed_as_one_message() -> None:
    """Stored as a message and the tool_calls step after it (same run): one assistant
    message, as the model sent it; a text answer of another run stays apart."""
    earlier = message("assistant", "Hello.", run_id="run_old")
    asked = message("user", "weather?")
    said = message("assistant", "Let me check.", run_id="run_current")
    step = tool_step("run_current", "call_1", "sunny")
    chat, _ = build_messages(run(instructions=""), [earlier, asked, said], [step])
    assert chat == [
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    other = tool_step("run_other", "call_2", "rain")
    chat, _ = build_messages(run(instructions=""), [asked, said], [other])
    assert [m["content"] for m in chat[:2]] == ["weather?", "Let me check."]
    assert "content" not in chat[2] and chat[2]["tool_calls"][0]["id"] == "call_2"


def test_only_the_users_image_files_are_read() -> None:
    """An assistant's message goes to the model as its text: its images are not read."""
    def with_image(role: str, file_id: str) -> dict[str, Any]:
        msg = message(role, "x")
        msg["content"].append({"type": "image_file", "image_file": {"file_id": file_id}})
        return msg
    assert image_file_ids([with_image("user", "file-u"),
                           with_image("assistant", "file-plot")]) == {"file-u"}


def test_media_type_from_bytes_then_name() -> None:
    assert media_type(b"\x89PNG\r\n\x1a\nrest", "x.jpg") == "image/png"
    assert media_type(b"\xff\xd8\xff\xe0", "x") == "image/jpeg"
    assert media_type(b"RIFF\x00\x00\x00\x00WEBPVP8", "x") == "image/webp"
    assert media_type(b"??", "picture.gif") == "image/gif"
    assert media_type(b"??", "noname") == "application/octet-stream"


def test_tool_calls_sit_between_the_messages_around_them() -> None:
    first = message("user", "weather?")
    step = tool_step("run_current", "call_1", "sunny")
    chat, _ = build_messages(run(instructions=""), [first], [step])
    assert chat[1]["tool_calls"][0]["id"] == "call_1"
    assert chat[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


def test_last_messages_keeps_the_newest() -> None:
    msgs = [message("user", str(i)) for i in range(5)]
    chat, _ = build_messages(
        run(instructions="", truncation_strategy={"type": "last_messages", "last_messages": 2}),
        msgs, [])
    assert [m["content"] for m in chat] == ["3", "4"]


def test_max_prompt_tokens_drops_oldest_but_keeps_current_tool_calls() -> None:
    msgs = [message("user", f"{i}" + "x" * 400) for i in range(4)]
    current = tool_step("run_current", "call_keep", "out")
    chat, tokens = build_messages(run(max_prompt_tokens=300), msgs, [current])
    assert tokens <= 300
    assert chat[0] == {"role": "system", "content": "Sys."}
    assert [m["content"][0] for m in chat if m["role"] == "user"] == ["2", "3"]
    assert any(m.get("tool_call_id") == "call_keep" for m in chat)


def test_max_prompt_tokens_never_drops_the_newest_message() -> None:
    msgs = [message("user", "old"), message("user", "new " + "x" * 2000)]
    chat, tokens = build_messages(run(max_prompt_tokens=256), msgs, [])
    assert tokens > 256  # over the budget: the run ends incomplete
    assert chat[-1]["content"].startswith("new ")
    assert all(m["content"] != "old" for m in chat)


def test_estimate() -> None:
    assert estimate("") == 0
    assert estimate("abcd") == 1
    assert estimate("abcde") == 2


def test_counts_are_of_text_tool_calls_and_images_with_the_given_count() -> None:
    msg = message("user", "look")
    msg["content"].append({"type": "image_url", "image_url": {"url": "https://x/" + "y" * 999}})
    step = tool_step("run_current", "call_1", "sunny")
    words = len  # one token per character, to see what is counted

    _, tokens = build_messages(run(instructions="Sys."), [msg], [step], count=words)
    # system "Sys." 4+4; user "look" 4+4 and one image 85; the call "f" + "{}" joined by a
    # newline 4+4; its output "sunny" 4+5
    assert tokens == 8 + 8 + 85 + 8 + 9


def test_the_budget_is_in_the_given_count() -> None:
    msgs = [message("user", "a" * 600), message("user", "b" * 600), message("user", "c")]
    few = lambda text: 1 if text else 0  # noqa: E731 (a tokenizer with very long tokens)
    chat, tokens = build_messages(run(max_prompt_tokens=256), msgs, [], count=few)
    assert len(chat) == 4 and tokens == 4 * 5
    chat, tokens = build_messages(run(max_prompt_tokens=256), msgs, [])  # the estimate
    assert [m["content"][0] for m in chat[1:]] == ["b", "c"] and tokens <= 256
