"""Threads and messages through the official SDK."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.api.runs_support import upload


def test_thread_with_initial_messages(client: OpenAI) -> None:
    file_id = upload(client)
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "Hello",
             "attachments": [{"file_id": file_id, "tools": [{"type": "code_interpreter"}]}]},
            {"role": "assistant", "content": "Hi, how can I help?"},
        ],
        tool_resources={"code_interpreter": {"file_ids": [file_id]}},
        metadata={"user": "u1"},
    )
    assert thread.id.startswith("thread_") and thread.object == "thread"
    assert thread.metadata == {"user": "u1"}
    assert thread.tool_resources.code_interpreter.file_ids == [file_id]
    messages = list(client.beta.threads.messages.list(thread.id, order="asc"))
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content[0].text.value == "Hello"
    assert messages[0].attachments[0].file_id == file_id
    assert messages[0].thread_id == thread.id
    assert client.beta.threads.retrieve(thread.id) == thread


def test_empty_thread(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    assert thread.metadata == {}
    assert list(client.beta.threads.messages.list(thread.id)) == []


def test_modify_thread(client: OpenAI) -> None:
    thread = client.beta.threads.create(metadata={"a": "1"})
    store_id = client.vector_stores.create().id
    updated = client.beta.threads.update(
        thread.id, metadata={"a": "2"},
        tool_resources={"file_search": {"vector_store_ids": [store_id]}})
    assert updated.metadata == {"a": "2"}
    assert updated.tool_resources.file_search.vector_store_ids == [store_id]
    assert client.beta.threads.retrieve(thread.id).metadata == {"a": "2"}


def test_message_crud(client: OpenAI) -> None:
    image_id = upload(client, "a.png", b"\x89PNG")
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(
        thread.id, role="user",
        content=[
            {"type": "text", "text": "Describe these"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png",
                                                "detail": "low"}},
            {"type": "image_file", "image_file": {"file_id": image_id}},
        ],
        metadata={"k": "v"},
    )
    assert message.id.startswith("msg_") and message.object == "thread.message"
    assert message.role == "user" and message.status == "completed"
    assert message.run_id is None and message.assistant_id is None
    assert [p.type for p in message.content] == ["text", "image_url", "image_file"]
    assert message.content[0].text.value == "Describe these"
    assert message.content[0].text.annotations == []
    assert message.content[1].image_url.url == "https://example.com/a.png"
    assert message.content[1].image_url.detail == "low"
    assert message.content[2].image_file.file_id == image_id

    fetched = client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert fetched == message
    updated = client.beta.threads.messages.update(message.id, thread_id=thread.id,
                                                  metadata={"k": "w"})
    assert updated.metadata == {"k": "w"}
    assert updated.content == message.content

    deleted = client.beta.threads.messages.delete(message.id, thread_id=thread.id)
    assert deleted.deleted and deleted.object == "thread.message.deleted"
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert err.value.body["message"] == f"No message found with id '{message.id}'."


def test_messages_of_unknown_thread_are_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.threads.messages.create("thread_missing", role="user", content="x")
    assert err.value.body["message"] == "No thread found with id 'thread_missing'."
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list("thread_missing")


def test_message_of_another_thread_is_404(client: OpenAI) -> None:
    first = client.beta.threads.create(messages=[{"role": "user", "content": "one"}])
    second = client.beta.threads.create()
    message = next(iter(client.beta.threads.messages.list(first.id)))
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message.id, thread_id=second.id)


def test_delete_thread_cascades(client: OpenAI) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "bye"}])
    message = next(iter(client.beta.threads.messages.list(thread.id)))
    result = client.beta.threads.delete(thread.id)
    assert result.deleted and result.object == "thread.deleted"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)


def test_messages_refer_only_to_files_of_the_project(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    for content, attachments in (
        ("x", [{"file_id": "file-nope", "tools": [{"type": "file_search"}]}]),
        ([{"type": "image_file", "image_file": {"file_id": "file-nope"}}], None),
    ):
        with pytest.raises(openai.NotFoundError):
            client.beta.threads.messages.create(thread.id, role="user", content=content,  # type: ignore[arg-type]
                                                attachments=attachments)  # type: ignore[arg-type]
    assert list(client.beta.threads.messages.list(thread.id)) == []
