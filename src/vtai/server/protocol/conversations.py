"""/v1/conversations request bodies: a conversation with its first items, its metadata, and
items added to it (at most 20 at once, as OpenAI's)."""

from __future__ import annotations

from pydantic import Field

from vtai.server.protocol.common import Metadata, Strict
from vtai.server.protocol.responses import InputItem

MAX_ITEMS = 20


class ConversationCreate(Strict):
    items: list[InputItem] | None = Field(None, max_length=MAX_ITEMS)
    metadata: Metadata = None


class ConversationUpdate(Strict):
    metadata: Metadata


class ItemsCreate(Strict):
    items: list[InputItem] = Field(min_length=1, max_length=MAX_ITEMS)
