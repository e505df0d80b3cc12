"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every failure the server answers passes through here, so the SDK raises the exception class
that matches the status (NotFoundError, BadRequestError, AuthenticationError, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from vtai.server.errors import (
    InvalidRequest,
    NotFound,
    ServiceError,
    TooLarge,
    TooMany,
    Unavailable,
    UpstreamRefused,
)

log = logging.getLogger("vtai.server")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


# The status of each kind of failure a service reports.
_STATUS: dict[type[ServiceError], int] = {
    InvalidRequest: 400, NotFound: 404, TooLarge: 413, TooMany: 429, Unavailable: 503}


def from_service(err: ServiceError) -> APIError:
    """A service's failure as OpenAI answers it."""
    status = err.status if isinstance(err, UpstreamRefused) else \
        next(code for kind, code in _STATUS.items() if isinstance(err, kind))
    headers = {"retry-after": str(err.retry_after)} if err.retry_after is not None else None
    return APIError(status, err.message, type=err.type, param=err.param, code=err.code,
                    headers=headers)


def error_response(err: APIError) -> Response:
    body = {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }
    return Response(
        orjson.dumps(body), status_code=err.status, media_type="application/json",
        headers=err.headers,
    )


DATABASE_UNAVAILABLE = APIError(
    503, "The database is unavailable at the moment; please retry shortly.",
    type="server_error", code="database_unavailable", headers={"retry-after": "1"})


def param_path(loc: Sequence[Any], body: Any = None) -> str | None:
    """``("body", "tools", 0, "function", "function", "name")`` -> ``tools[0].function.name``.

    pydantic puts a tagged union's tag after the list index; it is dropped by looking at the
    request body, where that item's ``type`` equals it.
    """
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    value = body
    maybe_tag = False  # after a list index or a tagged union's name
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            value = value[part] if isinstance(value, list) and -len(value) <= part < len(value) \
                else None
            maybe_tag = True
            continue
        is_tag = maybe_tag and isinstance(value, dict) and value.get("type") == part
        maybe_tag = str(part).startswith("tagged-union[")
        if is_tag or "[" in str(part) or "-" in str(part):
            # a union tag, or pydantic's name for a union member like "list[...]"
            continue
        out += f".{part}" if out else str(part)
        value = value.get(part) if isinstance(value, dict) else None
    return out or None


def _first_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The error to report. For a value that may be a string or an object (``tool_choice``,
    ``response_format``), pydantic reports the string alternative first; an object sent is
    better told what is wrong inside it."""
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    if loc and str(loc[-1]).startswith("literal[") and isinstance(first.get("input"), dict):
        for error in errors[1:]:
            if tuple(error.get("loc", ()))[:len(loc) - 1] == loc[:-1]:
                return error
    return first


_EXPECTED = {"bool_type": "a boolean", "int_type": "an integer", "int_from_float": "an integer",
             "float_type": "a number", "string_type": "a string", "list_type": "an array",
             "dict_type": "an object", "model_type": "an object",
             "model_attributes_type": "an object"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _describe(error: dict[str, Any], request: Request, body: Any) -> APIError:
    kind = error.get("type", "")
    loc = error.get("loc", ())
    param = param_path(loc, body)
    if kind == "json_invalid":
        return bad_request(
            "We could not parse the JSON body of your request. The API expects a JSON payload, "
            "but what was sent was not valid JSON.",
        )
    if kind == "missing":
        if tuple(loc) == ("body",):
            return bad_request("You must provide a JSON body with this request.")
        return bad_request(f"Missing required parameter: '{param}'.", param,
                           "missing_required_parameter")
    if kind == "extra_forbidden":
        return bad_request(f"Unrecognized request argument supplied: {param}", param,
                           "unknown_parameter")
    if tuple(loc) == ("body",) and kind in ("model_attributes_type", "dict_type"):
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type:
            return bad_request(
                f"Invalid Content-Type header ({content_type or 'none'}), expected "
                "application/json.",
            )
        return bad_request("The request body must be a JSON object.")
    if kind in _EXPECTED and param:
        return bad_request(
            f"Invalid type for '{param}': expected {_EXPECTED[kind]}, but got "
            f"{_json_type(error.get('input'))} instead.", param, "invalid_type")
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        tag = ctx.get("discriminator", "'type'").strip("'")
        param = f"{param}.{tag}" if param else tag
        return bad_request(
            f"Invalid value: '{ctx.get('tag')}'. Supported values are: "
            f"{ctx.get('expected_tags')}.", param, "invalid_value")
    limits = {
        "greater_than_equal": ("integer below minimum value", "a value >= {ge}"),
        "less_than_equal": ("integer above maximum value", "a value <= {le}"),
        "string_too_long": ("string too long", "a string with maximum length {max_length}"),
        "too_long": ("array too long", "an array with maximum length {max_length}"),
    }
    if kind in limits:
        what, expected = limits[kind]
        bounds = {name: f"{value:g}" if isinstance(value, float) else value
                  for name, value in ctx.items()}
        if any(isinstance(value, float) for value in ctx.values()):  # a number's bounds
            what = what.replace("integer", "decimal")
        got = error.get("input")
        got = len(got) if kind in ("string_too_long", "too_long") and got is not None else got
        noun = "length " if kind in ("string_too_long", "too_long") else ""
        return bad_request(
            f"Invalid '{param}': {what}. Expected {expected.format(**bounds)}, but got "
            f"{noun}{got} instead.", param, "invalid_value")
    message = str(error.get("msg", "invalid value"))
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    return bad_request(f"Invalid '{param}': {message}", param, "invalid_value")


def install(app: FastAPI) -> None:
    """Route every failure to OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return error_response(exc)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        return error_response(from_service(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if not errors:
            return error_response(bad_request("Invalid request."))
        return error_response(_describe(_first_error(errors), request, exc.body))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        route = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            return error_response(APIError(404, f"Invalid URL ({route})"))
        if exc.status_code == 405:
            return error_response(APIError(405, f"Invalid method for URL ({route})"))
        return error_response(APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(sa_exc.DBAPIError)
    async def _database(request: Request, exc: sa_exc.DBAPIError) -> Response:
        if isinstance(exc, sa_exc.DataError):
            return error_response(bad_request(
                "The request holds a value the database cannot store."))
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or \
                exc.connection_invalidated:
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                        exc.orig)
            return error_response(DATABASE_UNAVAILABLE)
        return await _unexpected(request, exc)

    @app.exception_handler(OSError)
    async def _connection(request: Request, exc: OSError) -> Response:
        # asyncpg raises plain OSError (connection refused) while it opens a connection.
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(DATABASE_UNAVAILABLE)

    @app.exception_handler(orjson.JSONEncodeError)
    async def _unencodable(request: Request, exc: orjson.JSONEncodeError) -> Response:
        # Only a request's JSON can bring a lone surrogate ("\ud800") into a string; no
        # database stores it, and it is caught here, when the object is encoded to be stored.
        if "surrogates" in str(exc):
            return error_response(bad_request(
                "Invalid Unicode in the request: a lone surrogate (an unpaired \\uD800-"
                "\\uDFFF escape) cannot be stored.", code="invalid_unicode"))
        if "64-bit" in str(exc):  # (the fields that take any JSON check this when parsed)
            return error_response(bad_request(
                "An integer in the request is out of range: integers must fit in 64 bits.",
                code="invalid_value"))
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # The server closes the connection after an unhandled error: said in the response,
        # so that the client does not send its next request on it.
        return error_response(
            APIError(500, "The server had an error while processing your request.",
                     type="server_error", headers={"connection": "close"})
        )
