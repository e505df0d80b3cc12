"""Fuzzing with schemathesis, with a fixed seed and a bounded number of examples per operation:

- against the server's own OpenAPI, with valid and invalid requests: no 5xx ever, and every
  error in OpenAI's shape;
- against OpenAI's contract (shared/spec) on the paths the server implements: responses
  conform to OpenAI's schemas.

The operations run one by one in plain tests (hypothesis drives each), so a failure names
the operation and the request that broke it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support import ServerProcess

SPECS = Path(__file__).resolve().parents[3] / "shared" / "spec"
CONTRACT = SPECS / "openai-assistants-v2.yaml"
RESPONSES_CONTRACT = SPECS / "openai-responses.yaml"
IMPLEMENTED = (r"^/(v1/)?(assistants|threads|files|vector_stores|responses|conversations"
               r"|chat/completions|embeddings|containers)")
RESPONSES_IMPLEMENTED = r"^/(v1/)?(responses|conversations|containers)"
EXAMPLES = 20


@schemathesis.check
def openai_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx answer is {"error": {"message", "type", "param", "code"}}."""
    if response.status_code < 400:
        return None
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"not OpenAI's error shape: {body!r}"
    assert set(error) >= {"message", "type", "param", "code"}, f"fields missing: {error!r}"
    assert isinstance(error["message"], str) and error["message"]
    return True


# Hundreds of cases each: more than the suite's per-test bound on a busy machine.
FUZZ_TIME = pytest.mark.timeout(900)


def fuzz(schema: Any, base_url: str, modes: list[GenerationMode], checks: list[Any]) -> int:
    """Run every operation of ``schema``; returns how many cases ran."""
    ran = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        for mode in modes:
            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal ran
                ran += 1
                case.call_and_validate(base_url=base_url, checks=checks, timeout=30)

            try:
                run()
            except Unsatisfiable:
                # an operation without inputs that can be made invalid
                assert mode == GenerationMode.NEGATIVE, operation.label
    return ran


@FUZZ_TIME
def test_own_api_never_fails_and_speaks_openai_errors(server: ServerProcess) -> None:
    root = server.base_url.removesuffix("/v1")
    schema = schemathesis.openapi.from_dict(httpx.get(f"{root}/openapi.json").json())
    ran = fuzz(schema.include(path_regex=IMPLEMENTED), root,
               [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
               [not_a_server_error, openai_error_shape])
    print(f"own API fuzz: {ran} cases")
    assert ran > 200


def contract(path: Path = CONTRACT) -> dict[str, Any]:
    """OpenAI's contract, with three relaxations: an empty list's first_id and last_id are
    null, as OpenAI's API answered (and the SDK expects), where the schema says string; an
    error answer is ``{"error": Error}`` (OpenAI's ErrorResponse, which the SDK reads) where
    the Responses document names ``Error`` itself; and a ``required`` list that names a
    field twice (the Responses document's container) names it once."""
    spec = yaml.safe_load(path.read_text())
    _dedupe_required(spec)
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, answer in (operation.get("responses") or {}).items():
                body = (answer.get("content") or {}).get("application/json") or {}
                if str(status).startswith("4") and \
                        body.get("schema") == {"$ref": "#/components/schemas/Error"}:
                    body["schema"] = {"$ref": "#/components/schemas/ErrorResponse"}
    for schema in spec["components"]["schemas"].values():
        for name in ("first_id", "last_id"):
            field = (schema.get("properties") or {}).get(name)
            if field is not None and field.get("type") == "string":
                field["type"] = ["string", "null"]
                field.pop("example", None)
    return spec  # type: ignore[no-any-return]


def _dedupe_required(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("required"), list):
            node["required"] = list(dict.fromkeys(node["required"]))
        for value in node.values():
            _dedupe_required(value)
    elif isinstance(node, list):
        for value in node:
            _dedupe_required(value)


@FUZZ_TIME
def test_responses_conform_to_openai_contract(server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_dict(contract()).include(path_regex=IMPLEMENTED)
    ran = fuzz(schema, server.base_url, [GenerationMode.POSITIVE],
               [not_a_server_error, response_schema_conformance, openai_error_shape])
    print(f"contract fuzz: {ran} cases")
    assert ran > 100




@FUZZ_TIME
def test_responses_api_conforms_to_openai_contract(server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_dict(contract(RESPONSES_CONTRACT)).include(
        path_regex=RESPONSES_IMPLEMENTED)
    ran = fuzz(schema, server.base_url, [GenerationMode.POSITIVE],
               [not_a_server_error, response_schema_conformance, openai_error_shape])
    print(f"responses contract fuzz: {ran} cases")
    assert ran > 100
