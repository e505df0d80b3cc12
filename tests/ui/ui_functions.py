"""Functions the UI under test offers its assistant (`vtai ui --functions ...`)."""

from __future__ import annotations

from vtai.assistants import function_tool


@function_tool
def get_weather(city: str, unit: str = "celsius") -> dict[str, object]:
    """Current weather in a city.

    Args:
        city: The city's name.
        unit: celsius or fahrenheit.
    """
    return {"city": city, "temperature": 21 if unit == "celsius" else 70, "sky": "sunny"}
