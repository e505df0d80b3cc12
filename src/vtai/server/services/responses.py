"""/v1/responses: create (streamed, in the background, or awaited), retrieve (or resume its
stream), delete, cancel, input items, input tokens.

A response is stored with its input items (and, with a conversation, its input added to the
conversation) in one transaction, then executed by a worker like a run: this process's when
it has room (claimed as it is stored), else any. A response that is neither streamed nor in
the background is awaited through its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select

from vtai.server import ids
from vtai.server.errors import bad_request, not_found
from vtai.server.protocol.lists import ListParams
from vtai.server.protocol.responses import InputTokensRequest, ResponseCreate
from vtai.server.providers.routing import ProviderMissing, Providers
from vtai.server.runs import items as item_shapes
from vtai.server.runs.events import RESPONSE_CANCELLED, WORK_CHANNEL, Event, Subscription
from vtai.server.runs.response_prompt import build_chat, missing_outputs
from vtai.server.runs.response_records import (
    ACTIVE,
    CANCELLED,
    IN_PROGRESS,
    QUEUED,
    ResponseRecords,
    append_to_conversation,
    conversation_items,
)
from vtai.server.runs.response_shape import new_response, public
from vtai.server.runs.tokens import Tokenizers
from vtai.server.runs.worker import Worker
from vtai.server.store import items, objects, queries, tables
from vtai.server.store.containers import RUNNING, ContainerStore, new_container, shown
from vtai.server.store.db import Database
from vtai.server.store.sql import Connection


@dataclass
class Created:
    """A response stored: the object, and its events when the caller streams or awaits it."""

    data: dict[str, Any]
    stream: Subscription | None


@dataclass
class Resumed:
    events: list[Event]
    sub: Subscription
    live: bool


def _conversation_id(body: ResponseCreate | InputTokensRequest) -> str | None:
    conversation = body.conversation
    return conversation if isinstance(conversation, str) or conversation is None \
        else conversation.id


def _check_tool_choice(request: dict[str, Any]) -> None:
    choice, tools = request.get("tool_choice"), request.get("tools") or []
    if not isinstance(choice, dict):
        return
    if choice["type"] == "function":
        if not any(t["type"] == "function" and t["name"] == choice["name"] for t in tools):
            raise bad_request(f"Tool choice '{choice['name']}' not found in 'tools' "
                              "parameter.", "tool_choice")
    elif not any(t["type"] == choice["type"] for t in tools):
        raise bad_request(f"Tool choice '{choice['type']}' not found in 'tools' parameter.",
                          "tool_choice")


def _check_calls(history: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """Every function call output answers a call, and every call is answered, or the model
    could not be asked (OpenAI's 400s)."""
    calls = {item["call_id"] for item in history + new if item.get("type") == "function_call"}
    for index, item in enumerate(new):
        if item.get("type") == "function_call_output" and item["call_id"] not in calls:
            raise bad_request(f"No tool call found for function call output with call_id "
                              f"{item['call_id']}.", f"input[{index}]")
    missing = missing_outputs(history + new)
    if missing:
        raise bad_request(f"No tool output found for function call {missing[0]}.", "input")


class Responses:
    def __init__(self, db: Database, records: ResponseRecords, worker: Worker,
                 providers: Providers, containers: ContainerStore,
                 tokenizers: Tokenizers | None = None) -> None:
        self.db = db
        self.containers = containers
        self.records = records
        self.worker = worker
        self.providers = providers
        self.tokenizers = tokenizers or Tokenizers()

    # --------------------------------------------------------------------------- create

    async def create(self, project: str, body: ResponseCreate) -> Created:
        request = body.model_dump(by_alias=True, exclude_none=True)
        conversation_id = _conversation_id(body)
        if body.previous_response_id and conversation_id:
            raise bad_request("Only one of 'previous_response_id' and 'conversation' may be "
                              "given.", "conversation")
        if body.background and body.store is False:
            raise bad_request("A background response must be stored: 'store' cannot be false "
                              "with 'background'.", "store")
        _check_tool_choice(request)
        await self._route(body.model)
        async with self.db.read() as conn:
            history, previous = await self._history(conn, project, body.previous_response_id,
                                                    conversation_id)
            new = await self._input(conn, project, request.get("input"))
            container, made = await self._container(conn, project, request, previous)
        _check_calls(history, new)
        given = [item["id"] for item in request.get("input") or ()
                 if isinstance(item, dict) and item.get("id")]

        response_id = ids.new_id("resp_")
        lease = self.worker.lease_for_new_run()
        background = bool(body.background)
        status = QUEUED if background or lease is None else IN_PROGRESS
        data = new_response(response_id, request, status, conversation_id,
                            container["id"] if container else None)
        stored = body.store is not False
        sub = self.records.bus.subscribe(response_id) if body.stream or not background \
            else None
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(tables.responses).values(
                    id=response_id, project_id=project, created_at=data["created_at"],
                    status=status, conversation_id=conversation_id,
                    previous_response_id=body.previous_response_id, stored=int(stored),
                    attempt=0, data=objects.dumps(data),
                    **(lease or {"worker_id": None, "lease_expires_at": None})))
                await items.insert_items(conn, project, response_id, items.INPUT, new)
                if made:
                    assert container is not None
                    await self.containers.insert(conn, project, container)
                if conversation_id is not None:
                    await append_to_conversation(conn, project, conversation_id, new, given)
                if lease is None:
                    await self.db.notify(conn, WORK_CHANNEL)
        except BaseException:
            if sub is not None:
                sub.close()
            raise
        if container is not None:
            await self._copy_in(project, container, request)
        shown = public(data)
        self.records.publish(response_id, "response.created", {
            "type": "response.created", "sequence_number": 0, "response": shown})
        if background:
            self.records.publish(response_id, "response.queued", {
                "type": "response.queued", "sequence_number": 1, "response": shown})
        if lease is not None:
            self.worker.adopt(data, project)
        else:
            self.worker.wake()
        return Created(shown, sub)

    async def finished(self, sub: Subscription) -> dict[str, Any]:
        """The response whose events ``sub`` reads, once it ended."""
        try:
            while True:
                for event in await sub.next_batch():
                    if event.ends_stream:
                        return dict(orjson.loads(event.data)["response"])
        finally:
            sub.close()

    async def _container(self, conn: Connection, project: str, request: dict[str, Any],
                         previous: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
        """The container of the response's code interpreter: the one it names (which must
        be the project's, and running), or for ``auto`` the previous response's while it
        runs, else a new one; and whether it is new (stored with the response). The files
        an ``auto`` one is given must be the project's."""
        for index, tool in enumerate(request.get("tools") or ()):
            if tool["type"] != "code_interpreter":
                continue
            if isinstance(tool["container"], str):
                found = await self.containers.get(conn, project, tool["container"])
                if found is None or shown(found)["status"] != RUNNING:
                    raise bad_request(f"Container '{tool['container']}' not found, or "
                                      "expired.", f"tools[{index}].container")
                return found, False
            for number, file_id in enumerate(tool["container"].get("file_ids") or ()):
                if await self.containers.files.get(conn, file_id, project) is None:
                    raise bad_request(f"No file found with id '{file_id}'.",
                                      f"tools[{index}].container.file_ids[{number}]")
            if previous is not None and previous.get("_container"):
                found = await self.containers.get(conn, project, previous["_container"])
                if found is not None and shown(found)["status"] == RUNNING:
                    return found, False
            return new_container("auto"), True
        return None, False

    async def _copy_in(self, project: str, container: dict[str, Any],
                       request: dict[str, Any]) -> None:
        """The files an ``auto`` container is given become files of the container, as the
        Containers API's ``file_ids`` do: listed with it, and in /mnt/data for the code."""
        for tool in request.get("tools") or ():
            spec = tool.get("container") if tool["type"] == "code_interpreter" else None
            for file_id in spec.get("file_ids") or () if isinstance(spec, dict) else ():
                # (None: deleted since it was checked, a moment ago)
                await self.containers.copy_file(project, container, file_id, None)

    async def _route(self, model: str) -> None:
        try:
            await self.providers.route(model)
        except ProviderMissing as err:
            raise bad_request(str(err), "model", "model_not_found") from err

    async def _history(self, conn: Connection, project: str, previous_id: str | None,
                       conversation_id: str | None
                       ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """What came before a new response (for its checks), and its previous response."""
        if previous_id is not None:
            previous = await self._stored(conn, project, previous_id)
            if previous is None:
                raise bad_request(f"Previous response with id '{previous_id}' not found.",
                                  "previous_response_id")
            if previous["status"] in ACTIVE:
                raise bad_request(f"Previous response with id '{previous_id}' is still "
                                  f"{previous['status']}.", "previous_response_id")
            return await items.chain_items(conn, previous_id), previous
        if conversation_id is not None:
            exists, active = await queries.thread_activity(conn, conversation_id, project)
            if not exists:
                raise not_found("conversation", conversation_id)
            if active:
                raise bad_request(f"Conversation {conversation_id} is a thread with an active "
                                  f"run {active}: wait for it to end, or cancel it.",
                                  "conversation")
            return await conversation_items(conn, conversation_id), None
        return [], None

    async def _input(self, conn: Connection, project: str, value: Any
                     ) -> list[dict[str, Any]]:
        """The request's input as whole items, references replaced by what they name."""
        found = item_shapes.input_items(value)
        for index, item in enumerate(found):
            if item["type"] != "item_reference":
                continue
            message, stored = await items.find_item(conn, project, item["id"])
            if message is not None:
                stored = item_shapes.message_item(message)
            if stored is None:
                raise bad_request(f"Item with id '{item['id']}' not found.",
                                  f"input[{index}].id")
            found[index] = stored
        return found

    async def _stored(self, conn: Connection, project: str, response_id: str
                      ) -> dict[str, Any] | None:
        r = tables.responses
        row = (await conn.execute(select(r.c.data).where(
            r.c.id == response_id, r.c.project_id == project, r.c.stored == 1))).first()
        return None if row is None else orjson.loads(row.data)

    # ----------------------------------------------------------------------------- reads

    async def retrieve(self, project: str, response_id: str,
                       include: list[str] | None = None) -> dict[str, Any]:
        async with self.db.read() as conn:
            data = await self._stored(conn, project, response_id)
        if data is None:
            raise not_found("response", response_id)
        return public(data, include or [])  # (what this request includes, not its creator)

    async def resume(self, project: str, response_id: str, starting_after: int | None
                     ) -> Resumed:
        """The response's stream from after the event numbered ``starting_after`` (from its
        start when None), then its events as they come until it ends."""
        data = await self.retrieve(project, response_id)
        if not data.get("background"):
            raise bad_request("Only responses created with background=true can be streamed "
                              "again.", "stream")
        sub = self.records.bus.subscribe(response_id, "")
        try:
            missed = await self.records.bus.history(response_id, None)
            status = (await self.retrieve(project, response_id))["status"]
        except BaseException:
            sub.close()
            raise
        sub.seen.update(event.id for event in missed)
        delivered = sub.take_delivered()
        events = sorted({e.id: e for e in [*missed, *delivered]}.values(), key=lambda e: e.id)
        after = -1 if starting_after is None else starting_after
        events = [e for e in events
                  if int(orjson.loads(e.data).get("sequence_number", -1)) > after]
        live = status in ACTIVE or any(e.ends_stream for e in events)
        return Resumed(events, sub, live)

    async def delete(self, project: str, response_id: str) -> None:
        """Delete a response; one still going is stopped first (as a cancel: whoever
        awaits or streams it gets its end)."""
        await self._stop(project, response_id, background_only=False)
        r = tables.responses
        async with self.db.write() as conn:
            gone = await objects.delete_objects(conn, r, r.c.id == response_id,
                                                r.c.project_id == project, r.c.stored == 1)
            if not gone:
                raise not_found("response", response_id)
            await items.delete_owned(conn, response_id)

    async def cancel(self, project: str, response_id: str) -> dict[str, Any]:
        """Cancel a background response (a finished one is returned as it is)."""
        return await self._stop(project, response_id, background_only=True)

    async def _stop(self, project: str, response_id: str, background_only: bool
                    ) -> dict[str, Any]:
        for _ in range(5):
            stored = await self.records.load(response_id)
            if stored is None or stored.project != project or not stored.stored:
                raise not_found("response", response_id)
            if background_only and not stored.data.get("background"):
                raise bad_request("Only responses created with background=true can be "
                                  "cancelled.", "response_id")
            if stored.status not in ACTIVE:
                return public(stored.data)
            if await self.records.move(stored, CANCELLED, release=True):
                shown = public(stored.data)
                self.records.publish(response_id, RESPONSE_CANCELLED, {"response": shown})
                if not self.worker.interrupt(response_id):
                    self.worker.wake()
                return shown
        raise bad_request("The response is changing too fast to stop; try again.")

    async def input_items(self, project: str, response_id: str, page: ListParams
                          ) -> dict[str, Any]:
        async with self.db.read() as conn:
            if await self._stored(conn, project, response_id) is None:
                raise not_found("response", response_id)
            found = await items.owned_items(conn, response_id, items.INPUT)
        return page_of(found, page)

    async def input_tokens(self, project: str, body: InputTokensRequest) -> dict[str, Any]:
        """How many tokens the input would take as a response's prompt."""
        async with self.db.read() as conn:
            history, _ = await self._history(conn, project, body.previous_response_id,
                                             _conversation_id(body))
            new = await self._input(conn, project, body.model_dump(
                by_alias=True, exclude_none=True).get("input"))
        count = self.tokenizers.count_for(body.model or "")
        _, tokens = build_chat(history + new, body.instructions, lambda _item: None,
                               count=count)
        return {"object": "response.input_tokens", "input_tokens": tokens}


def page_of(found: list[dict[str, Any]], page: ListParams) -> dict[str, Any]:
    """One page of items (in their order; ``desc``: newest first) by item id cursors."""
    ordered = list(reversed(found)) if page.order == "desc" else list(found)
    if page.after is not None:
        at = next((i for i, item in enumerate(ordered) if item.get("id") == page.after), None)
        ordered = ordered[at + 1:] if at is not None else []
    if page.before is not None:
        at = next((i for i, item in enumerate(ordered) if item.get("id") == page.before), None)
        ordered = ordered[:at] if at is not None else ordered
    shown = ordered[:page.limit]
    return {"object": "list", "data": shown,
            "first_id": shown[0]["id"] if shown else None,
            "last_id": shown[-1]["id"] if shown else None,
            "has_more": len(ordered) > page.limit}
