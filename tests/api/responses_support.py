"""Helpers for Responses API tests: OpenAI's published schemas of the stream events and of the
response object, to check what the server sends against them."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from vtai.testing import FakeModelServer

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "openai-responses.yaml"


@functools.cache
def _spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text())  # type: ignore[no-any-return]


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource("spec", Resource.from_contents(
        _spec(), default_specification=DRAFT202012))


@functools.cache
def event_schemas() -> dict[str, str]:
    """The schema name of each stream event type (ResponseStreamEvent's members)."""
    schemas = _spec()["components"]["schemas"]
    found = {}
    for member in schemas["ResponseStreamEvent"]["anyOf"]:
        name = member["$ref"].rsplit("/", 1)[-1]
        kinds = schemas[name]["properties"]["type"].get("enum") or []
        for kind in kinds:
            found[kind] = name
    return found


def check_schema(value: Any, name: str) -> None:
    """Raise if ``value`` does not match the spec's schema ``name``."""
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"spec#/components/schemas/{name}"}, registry=_registry())
    validator.validate(value)


def check_event(event: dict[str, Any]) -> None:
    kind = event["type"]
    assert kind in event_schemas(), f"{kind} is not a ResponseStreamEvent"
    check_schema(event, event_schemas()[kind])


def scripted_model(fake_model: FakeModelServer, *steps: Any) -> str:
    """A model name no other test uses, with ``steps`` scripted for it."""
    model = f"script-{uuid.uuid4().hex[:10]}"
    if steps:
        fake_model.script(model, *steps)
    return model
