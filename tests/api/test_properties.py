"""Property tests: metadata validation and pagination, and nothing stored changes after a
rejected request."""

from __future__ import annotations

import openai
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import OpenAI

keys = st.text(min_size=1, max_size=70)
values = st.text(max_size=520)
metadata = st.dictionaries(keys, values, max_size=18)

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def metadata_is_valid(md: dict[str, str]) -> bool:
    return len(md) <= 16 and all(len(k) <= 64 and len(v) <= 512 for k, v in md.items())


@SETTINGS
@given(md=metadata)
def test_metadata_accepted_exactly_when_valid(client: OpenAI, md: dict[str, str]) -> None:
    thread = client.beta.threads.create(metadata={"original": "yes"})
    try:
        updated = client.beta.threads.update(thread.id, metadata=md)
    except openai.BadRequestError as err:
        assert not metadata_is_valid(md)
        assert err.body["param"] == "metadata"
        assert client.beta.threads.retrieve(thread.id).metadata == {"original": "yes"}
    else:
        assert metadata_is_valid(md)
        assert updated.metadata == md
        assert client.beta.threads.retrieve(thread.id).metadata == md


@SETTINGS
@given(count=st.integers(0, 9), limit=st.integers(1, 4),
       order=st.sampled_from(["asc", "desc"]))
def test_pages_partition_the_list(client: OpenAI, count: int, limit: int, order: str) -> None:
    thread = client.beta.threads.create()
    ids = [client.beta.threads.messages.create(thread.id, role="user", content=str(i)).id
           for i in range(count)]
    expected = ids if order == "asc" else ids[::-1]
    pages, after = [], None
    while True:
        page = client.beta.threads.messages.list(thread.id, limit=limit, order=order,  # type: ignore[arg-type]
                                                 **({"after": after} if after else {}))
        pages.append([m.id for m in page.data])
        assert len(page.data) <= limit
        if not page.has_more:
            break
        after = page.last_id
    assert [i for p in pages for i in p] == expected
