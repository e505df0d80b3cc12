"""The demo model of ``vtai serve --fake-model``: it uses the tools it is offered on plain
requests, so every feature of the UI and of ``vtai chat`` can be tried before a real model is
configured.

Asked for a chart (plot, graph) it runs chart code with the code tool; asked about the
user's files (documents, search, summarize) it searches them; a request naming one of the
offered functions (``weather`` for ``get_weather``) calls it with arguments made from its
schema. Once a tool answered, it says what came back (citing a search's first passage).
Anything else is echoed. Scripted steps still come first (see docs/fake-model.md)."""

from __future__ import annotations

import json
import re
from typing import Any

from vtai.testing.chat import last_user_text
from vtai.testing.steps import Call, Reply, Step, ToolCalls

NOTE = "[VT.ai fake model: no real model is configured]"
CODE_TOOLS = ("code_interpreter", "python")
SEARCH_TOOL = "file_search"
CHART_WORDS = ("chart", "plot", "graph", "draw", "visuali")
SEARCH_WORDS = ("file", "document", "search", "summar", "upload", "attached", "pdf")
CHART_CODE = """import matplotlib.pyplot as plt

xs = list(range(1, 11))
plt.plot(xs, [x * x for x in xs], marker="o")
plt.title("Squares of 1 to 10")
plt.xlabel("x")
plt.ylabel("x squared")
plt.show()
print("squares:", [x * x for x in xs])
"""
MARKER = re.compile(r"【\d+:\d+†[^】]*】")


def demo_reply(body: dict[str, Any]) -> Step:
    """The demo model's answer to a chat request ``body``."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "tool":
        return _after_tool(messages)
    text = last_user_text(body)
    call = _tool_call(text.lower(), _offered(body), text)
    if call is not None:
        return ToolCalls([call])
    return Reply(f"{NOTE} You said: {text}")


def _offered(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The functions the request offers, by name."""
    offered = {}
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            offered[function["name"]] = function
    return offered


def _tool_call(lowered: str, offered: dict[str, dict[str, Any]], text: str) -> Call | None:
    code_tool = next((name for name in CODE_TOOLS if name in offered), None)
    if code_tool and any(word in lowered for word in CHART_WORDS):
        return Call(code_tool, {"code": CHART_CODE})
    if SEARCH_TOOL in offered and any(word in lowered for word in SEARCH_WORDS):
        return Call(SEARCH_TOOL, {"queries": [text]})
    for name, function in offered.items():
        if name in (*CODE_TOOLS, SEARCH_TOOL):
            continue
        words = [w for w in re.split(r"[_\W]+", name.lower()) if len(w) > 3 and
                 w not in ("get", "list", "find", "make")]
        if any(word in lowered for word in words):
            return Call(name, _arguments(function.get("parameters") or {}, text))
    return None


def _arguments(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments for the required parameters: a capitalized word of the request for text
    (a city, a name), else the schema's first choice or a plain value."""
    names = [w.strip(".,!?") for w in text.split()[1:] if w[:1].isupper()]
    properties = schema.get("properties") or {}
    arguments: dict[str, Any] = {}
    for name in schema.get("required") or []:
        spec = properties.get(name) or {}
        if spec.get("enum"):
            arguments[name] = spec["enum"][0]
        elif spec.get("type") in ("integer", "number"):
            arguments[name] = 1
        elif spec.get("type") == "boolean":
            arguments[name] = True
        elif spec.get("type") == "array":
            arguments[name] = [text]
        else:
            arguments[name] = names[0] if names else "example"
    return arguments


def _after_tool(messages: list[dict[str, Any]]) -> Reply:
    output = str(messages[-1].get("content") or "")
    name = _called(messages)
    if name in CODE_TOOLS:
        printed = "\n".join(line for line in output.strip().splitlines()
                            if not line.startswith("[image "))  # (the tool's own notes)
        return Reply(f"{NOTE} I ran the code; the chart is shown with this answer. "
                     f"It printed:\n\n```text\n{printed[:1500]}\n```")
    if name == SEARCH_TOOL:
        found = MARKER.search(output)
        if found is None:
            return Reply(f"{NOTE} I searched your files and found nothing that matches.")
        lines = output[found.end():].splitlines()
        passage = " ".join(" ".join(line.lstrip("#> ") for line in lines).split())[:300]
        return Reply(f"{NOTE} From your files: “{passage}” {found.group()}")
    return Reply(f"{NOTE} `{name}` answered: {_compact(output)}")


def _called(messages: list[dict[str, Any]]) -> str:
    """The name of the function the last tool message answers."""
    call_id = messages[-1].get("tool_call_id")
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("id") == call_id:
                return str((call.get("function") or {}).get("name"))
    return "the tool"


def _compact(output: str) -> str:
    try:
        return json.dumps(json.loads(output), ensure_ascii=False)
    except ValueError:
        return output.strip()[:1500]
