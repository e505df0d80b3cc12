"""Untrusted strings: unicode edge cases are stored and returned exactly, what no backend can
store is refused with 400, and deeply nested JSON is refused without harm."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from tests.api.test_errors import assert_openai_error
from tests.support import ServerProcess

EDGE_CASES = [
    "emoji 👩🏽‍🚀 and flags 🇳🇴",
    "right-to-left: שלום עולם and مرحبا",
    "combining: e\u0301 a\u0308 and zero-width: a\u200bb\u200dc\ufeff",
    "noncharacters \ufffe \uffff and private use \ue000",
    "line separators \u2028 \u2029 and controls \x01\x1f\x7f",
    "astral: \U0001d518\U0001d52b \U0002070e",
    "  leading and trailing spaces  ",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_unicode_is_stored_and_returned_exactly(client: OpenAI, text: str) -> None:
    thread = client.beta.threads.create(metadata={"note": text[:512]})
    message = client.beta.threads.messages.create(thread.id, role="user", content=text,
                                                  metadata={text[:64]: text[:512]})
    fetched = client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert fetched.content[0].text.value == text  # type: ignore[union-attr]
    assert fetched.metadata == {text[:64]: text[:512]}
    assert client.beta.threads.retrieve(thread.id).metadata == {"note": text[:512]}
    listed = client.beta.threads.messages.list(thread.id).data
    assert [m.content[0].text.value for m in listed] == [text]  # type: ignore[union-attr]


def _post(server: ServerProcess, path: str, raw: bytes) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", content=raw,
                      headers={"content-type": "application/json"}, timeout=30)


@pytest.mark.parametrize("raw", [
    b'{"role": "user", "content": "nul \\u0000 inside"}',
    b'{"role": "user", "content": "lone surrogate \\ud800"}',
    b'{"role": "user", "content": "ok", "metadata": {"k\\u0000": "v"}}',
], ids=["nul", "lone-surrogate", "nul-in-metadata-key"])
def test_unstorable_text_is_refused(server: ServerProcess, client: OpenAI, raw: bytes) -> None:
    thread = client.beta.threads.create()
    response = _post(server, f"/threads/{thread.id}/messages", raw)
    if response.status_code == 200:  # stored: then it must come back exactly as sent
        message = response.json()
        fetched = httpx.get(f"{server.base_url}/threads/{thread.id}/messages/{message['id']}",
                            timeout=30)
        assert fetched.json() == message
    else:
        assert_openai_error(response, 400)
    # the thread is intact either way
    assert client.beta.threads.retrieve(thread.id).id == thread.id


@pytest.mark.parametrize(("path", "raw"), [
    ("/assistants", rb'{"model": "m", "instructions": "half \udc00 a pair"}'),
    ("/threads", rb'{"metadata": {"k": "\ud83d"}}'),
    ("/threads", rb'{"messages": [{"role": "user", "content": "ok"},'
                 rb' {"role": "user", "content": "\udfff"}]}'),
    ("/vector_stores", rb'{"name": "\ud800\ud800"}'),
])
def test_lone_surrogates_are_refused_anywhere(server: ServerProcess, client: OpenAI,
                                              path: str, raw: bytes) -> None:
    before = len(client.beta.assistants.list().data), len(client.vector_stores.list().data)
    error = assert_openai_error(_post(server, path, raw), 400)
    assert "surrogate" in str(error["message"]) or error["code"] == "invalid_value"
    assert (len(client.beta.assistants.list().data),
            len(client.vector_stores.list().data)) == before


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_nesting_bombs_are_refused(server: ServerProcess, client: OpenAI, depth: int) -> None:
    thread = client.beta.threads.create(metadata={"kept": "yes"})
    bomb = b'{"metadata": {"k": ' + b"[" * depth + b"]" * depth + b"}}"
    assert_openai_error(_post(server, f"/threads/{thread.id}", bomb), 400)
    bomb = b'{"role": "user", "content": [' + b'{"a":' * depth + b"1" + b"}" * depth + b"]}"
    assert_openai_error(_post(server, f"/threads/{thread.id}/messages", bomb), 400)
    # nothing changed, and the server answers as before
    assert client.beta.threads.retrieve(thread.id).metadata == {"kept": "yes"}
    assert client.beta.threads.messages.list(thread.id).data == []
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve("thread_missing")
