"""The one exception type the client module raises, and the translation into it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import openai


class AssistantsError(Exception):
    """A request to the Assistants API failed, or a run could not be followed to its end.

    ``status`` is the HTTP status when the server answered, ``code`` its error code."""

    def __init__(self, message: str, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RunTimeout(AssistantsError):
    """A run did not finish (or stop to wait for tool outputs) in time."""


@contextmanager
def api_errors(doing: str) -> Iterator[None]:
    """Re-raise the SDK's exceptions as an :class:`AssistantsError` that says what failed."""
    try:
        yield
    except openai.APIStatusError as err:
        detail = _error_message(err)
        raise AssistantsError(f"Could not {doing}: {detail} (HTTP {err.status_code})",
                              status=err.status_code, code=err.code) from err
    except openai.APITimeoutError as err:
        raise AssistantsError(f"Could not {doing}: the server did not answer in time") from err
    except openai.APIConnectionError as err:
        raise AssistantsError(f"Could not {doing}: cannot reach the server "
                              f"({err.request.method} {err.request.url})") from err
    except openai.APIError as err:  # an `error` event in a stream
        raise AssistantsError(f"Could not {doing}: {err.message}") from err


def _error_message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return err.message
