"""Function registry: schemas from type hints and docstrings, validation, failures as outputs."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Literal

from pydantic import BaseModel

from vtai.assistants import FunctionRegistry


class Point(BaseModel):
    x: float
    y: float


def plot(points: list[Point], kind: Literal["line", "bar"] = "line", title: str | None = None,
         ) -> str:
    """Draw a chart of points.

    Args:
        points: The points to draw,
            in order.
        kind: Chart type.
        title: A title above the chart.

    Returns:
        Where the chart was saved.
    """
    return f"{kind}:{len(points)}:{title}"


def convert(amount: float, currency: str = "EUR") -> float:
    """Convert money.

    :param amount: How much.
    :param str currency: Target currency.
    """
    return amount * 2


def test_schema_from_hints_and_docstrings() -> None:
    registry = FunctionRegistry()
    registry.register(plot)
    registry.register(convert, name="to_currency")
    [plot_tool, convert_tool] = registry.tools()
    assert plot_tool["type"] == "function"
    fn = plot_tool["function"]
    assert (fn["name"], fn["description"]) == ("plot", "Draw a chart of points.")
    params = fn["parameters"]
    assert params["required"] == ["points"] and params["additionalProperties"] is False
    assert params["properties"]["points"]["description"] == "The points to draw, in order."
    assert params["properties"]["kind"] == {"default": "line", "description": "Chart type.",
                                            "enum": ["line", "bar"], "type": "string"}
    assert params["$defs"]["Point"]["required"] == ["x", "y"]
    assert "title" not in json.dumps(params).replace('"title":', "").split("properties")[0]
    conv = convert_tool["function"]
    assert conv["name"] == "to_currency" and conv["description"] == "Convert money."
    assert conv["parameters"]["properties"]["currency"]["description"] == "Target currency."
    assert conv["parameters"]["properties"]["amount"]["type"] == "number"


async def test_arguments_are_validated_and_failures_are_outputs() -> None:
    registry = FunctionRegistry()
    registry.register(plot)

    def explode(reason: str) -> None:
        raise ValueError(reason)

    registry.register(explode)
    ok = await registry.execute("plot", '{"points": [{"x": 1, "y": 2}], "kind": "bar"}')
    assert ok == "bar:1:None"
    bad = json.loads(await registry.execute("plot", '{"points": [{"x": 1}], "kind": "pie"}'))
    assert "points.0.y: Field required" in bad["error"]
    assert "kind: Input should be 'line' or 'bar'" in bad["error"]
    extra = json.loads(await registry.execute("plot", '{"points": [], "colour": "red"}'))
    assert "colour: Extra inputs are not permitted" in extra["error"]
    assert "not valid JSON" in json.loads(await registry.execute("plot", "{oops"))["error"]
    assert json.loads(await registry.execute("explode", '{"reason": "boom"}')) == {
        "error": "explode raised ValueError: boom"}
    unknown = json.loads(await registry.execute("nope", "{}"))["error"]
    assert unknown == "There is no function named 'nope' (functions: explode, plot)."


async def test_sync_functions_run_off_the_event_loop_and_results_are_json() -> None:
    registry = FunctionRegistry()
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def where() -> dict[str, bool]:
        seen.append(threading.get_ident())
        return {"off_loop": True}

    async def later() -> list[int]:
        await asyncio.sleep(0)
        return [1, 2]

    registry.register(where)
    registry.register(later)
    assert await registry.execute("where", "") == '{"off_loop": true}'
    assert await registry.execute("later", "{}") == "[1, 2]"
    assert seen and seen[0] != loop_thread
