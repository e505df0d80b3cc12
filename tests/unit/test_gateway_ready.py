"""A new connection to a gateway kernel is ready once a kernel_info request is answered AND its
IOPub status reaches us: until the connection's IOPub subscription settles, what the kernel
publishes is lost (a call made then would wait for an end it never sees). Seen after restarts
on a real gateway; here, the rule against scripted channels."""

from __future__ import annotations

import asyncio
from typing import Any

from vtai.server.tools.code_interpreter import gateway_client
from vtai.server.tools.code_interpreter.gateway_client import Channels, wait_ready


class Scripted(Channels):
    """Answers each kernel_info request as ``answers`` says: "reply" (the shell reply only,
    its IOPub status lost) or "both"."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked = 0
        self.inbox: list[dict[str, Any]] = []

    async def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        assert (channel, msg_type) == ("shell", "kernel_info_request")
        self.asked += 1
        msg_id = f"m{self.asked}"
        answer = self.answers.pop(0) if self.answers else "none"
        parent = {"msg_id": msg_id}
        if answer == "both":
            self.inbox.append({"channel": "iopub", "parent_header": parent,
                               "header": {"msg_type": "status"},
                               "content": {"execution_state": "busy"}})
        if answer in ("both", "reply"):
            self.inbox.append({"channel": "shell", "parent_header": parent,
                               "header": {"msg_type": "kernel_info_reply"}, "content": {}})
        return msg_id

    async def receive(self, seconds: float) -> dict[str, Any] | None:
        if self.inbox:
            return self.inbox.pop(0)
        await asyncio.sleep(min(seconds, 0.01))
        return None


def test_ready_when_the_reply_and_its_status_come() -> None:
    channels = Scripted("both")
    assert asyncio.run(wait_ready(channels, 5))
    assert channels.asked == 1


def test_a_reply_without_its_status_is_asked_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(gateway_client, "IOPUB_SECONDS", 0.05)
    channels = Scripted("reply", "reply", "both")
    assert asyncio.run(wait_ready(channels, 5))
    assert channels.asked == 3


def test_never_ready_without_status() -> None:
    channels = Scripted(*["reply"] * 100)
    assert not asyncio.run(wait_ready(channels, 0.3))
