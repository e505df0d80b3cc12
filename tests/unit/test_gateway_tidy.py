"""After each call on a gateway kernel, a program of ours kills what the code left running
and lists /mnt/data; when processes outlive it, the kernel is restarted and the logs say so.
The program itself runs in real sandboxes in tests/api/test_code_interpreter.py (the fork
bomb on the gateway); here, what the session makes of its answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.gateway_session import GatewaySession
from vtai.server.tools.code_interpreter.kernel import Ending, Sink
from vtai.server.tools.code_interpreter.session import LOST_ALL
from vtai.server.tools.code_interpreter.session_rows import SessionState


class Scripted(GatewaySession):
    """A session whose kernel ran the call, and whose tidying printed ``tidied``."""

    def __init__(self, tidied: str, ending: Ending | None = None) -> None:
        super().__init__(client=None, rows=None, settings=CodeInterpreterSettings(),  # type: ignore[arg-type]
                         project="proj", session_id="sess", kernel_id="k", state=SessionState())
        self.tidied = tidied
        self.ending = ending or Ending("ok", True)
        self.restarts = 0

    async def _run(self, code: str, wall_seconds: float, sink: Sink,
                   silent: bool = False) -> Ending:
        return self.ending

    async def _hidden(self, code: str) -> str:
        assert "os.kill(-1, signal.SIGKILL)" in code  # the tidying, with the listing
        return self.tidied

    async def _restart(self) -> str:
        self.restarts += 1
        return LOST_ALL


async def _ignore(_: Any) -> None:
    pass


def _call(session: Scripted) -> str:
    return asyncio.run(session.execute("x = 1", _ignore))


def test_a_clear_namespace_keeps_the_kernel_and_its_listing() -> None:
    session = Scripted(json.dumps({"clear": True, "files": {"a.txt": [5, 3]}}))
    assert _call(session) == ""
    assert session.restarts == 0
    assert asyncio.run(session.snapshot()) == {"a.txt": (5, 3)}


def test_processes_left_alive_restart_the_kernel_saying_so() -> None:
    session = Scripted(json.dumps({"clear": False, "files": {"a.txt": [5, 3]}}))
    note = _call(session)
    assert note == f"Processes started by the code could not be stopped; {LOST_ALL}"
    assert session.restarts == 1


def test_a_timed_out_call_says_both() -> None:
    session = Scripted(json.dumps({"clear": False, "files": {}}), Ending("timeout", True))
    notes = _call(session).split("\n")
    assert notes[0].startswith("Execution timed out") and notes[0].endswith("(variables are kept).")
    assert notes[1].startswith("Processes started by the code could not be stopped")


def test_an_unreadable_answer_keeps_the_kernel() -> None:
    # (code that replaced json or print in its kernel): no files to copy out, no restart
    session = Scripted("not json")
    assert _call(session) == ""
    assert session.restarts == 0
