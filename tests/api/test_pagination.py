"""List semantics as OpenAI's: limit, order, after/before, first_id/last_id/has_more."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI


@pytest.fixture()
def thread_with(client: OpenAI):  # type: ignore[no-untyped-def]
    def make(n: int) -> tuple[str, list[str]]:
        thread = client.beta.threads.create()
        ids = [client.beta.threads.messages.create(thread.id, role="user", content=f"m{i}").id
               for i in range(n)]
        return thread.id, ids
    return make


def test_empty_list(client: OpenAI, thread_with) -> None:  # type: ignore[no-untyped-def]
    thread_id, _ = thread_with(0)
    page = client.beta.threads.messages.list(thread_id)
    assert page.data == [] and page.has_more is False
    assert page.first_id is None and page.last_id is None


def test_default_order_is_newest_first(client: OpenAI, thread_with) -> None:  # type: ignore[no-untyped-def]
    thread_id, ids = thread_with(3)
    page = client.beta.threads.messages.list(thread_id)
    assert [m.id for m in page.data] == ids[::-1]
    assert page.first_id == ids[-1] and page.last_id == ids[0]
    asc = client.beta.threads.messages.list(thread_id, order="asc")
    assert [m.id for m in asc.data] == ids


def test_exactly_limit(client: OpenAI, thread_with) -> None:  # type: ignore[no-untyped-def]
    thread_id, ids = thread_with(4)
    page = client.beta.threads.messages.list(thread_id, limit=4, order="asc")
    assert [m.id for m in page.data] == ids and page.has_more is False
    page = client.beta.threads.messages.list(thread_id, limit=3, order="asc")
    assert [m.id for m in page.data] == ids[:3] and page.has_more is True


def test_auto_pagination_visits_every_item_once(client: OpenAI, thread_with) -> None:  # type: ignore[no-untyped-def]
    thread_id, ids = thread_with(7)
    seen = [m.id for m in client.beta.threads.messages.list(thread_id, limit=2, order="asc")]
    assert seen == ids
    seen = [m.id for m in client.beta.threads.messages.list(thread_id, limit=3)]
    assert seen == ids[::-1]


def test_after_and_before(client: OpenAI, thread_with) -> None:  # type: ignore[no-untyped-def]
    thread_id, ids = thread_with(6)
    after = client.beta.threads.messages.list(thread_id, order="asc", after=ids[1], limit=2)
    assert [m.id for m in after.data] == ids[2:4] and after.has_more
    before = client.beta.threads.messages.list(thread_id, order="asc", before=ids[4], limit=2)
    assert [m.id for m in before.data] == ids[2:4] and before.has_more
    both = client.beta.threads.messages.list(thread_id, order="asc", after=ids[0],
                                             before=ids[5])
    assert [m.id for m in both.data] == ids[1:5] and not both.has_more
    desc_before = client.beta.threads.messages.list(thread_id, before=ids[2], limit=2)
    assert [m.id for m in desc_before.data] == [ids[4], ids[3]] and desc_before.has_more
    desc_after = client.beta.threads.messages.list(thread_id, after=ids[2])
    assert [m.id for m in desc_after.data] == [ids[1], ids[0]] and not desc_after.has_more


def test_deleting_while_iterating(client: OpenAI) -> None:
    created = {client.beta.assistants.create(model="m", metadata={"sweep": "yes"}).id
               for _ in range(5)}
    removed = set()
    for assistant in client.beta.assistants.list(limit=2):
        if assistant.id in created:
            client.beta.assistants.delete(assistant.id)
            removed.add(assistant.id)
    assert removed == created


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"order": "sideways"}])
def test_bad_list_params(client: OpenAI, params: dict[str, object]) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.list(**params)  # type: ignore[arg-type]
    assert err.value.body["param"] == next(iter(params))
