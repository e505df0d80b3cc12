"""What a request can fail with, as services and the engine say it: the edge (api/errors.py)
answers each kind with OpenAI's status and error shape."""

from __future__ import annotations


class ServiceError(Exception):
    """A request that cannot be done: ``message`` for the caller, the request ``param`` at
    fault and a ``code`` when there is one."""

    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after  # seconds, for a limit the caller may wait out


class InvalidRequest(ServiceError):
    """Bad input, or a request that does not fit the objects' state (400)."""


class NotFound(ServiceError):
    """An object the request names is not in the caller's project (404)."""


class TooLarge(ServiceError):
    """More bytes than a limit takes (413)."""


class TooMany(ServiceError):
    """A limit on what a project may have at once (429)."""

    type = "requests"


class Unavailable(ServiceError):
    """Something the request needs is not there at the moment (503)."""

    type = "server_error"


class UpstreamRefused(ServiceError):
    """A model upstream refused a request passed on to it (its own status: the caller's
    request was at fault), or failed it (502)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.type = "invalid_request_error" if status < 500 else "server_error"


def not_found(kind: str, object_id: str) -> NotFound:
    """OpenAI's words for a missing object: ``No assistant found with id 'asst_...'.``"""
    return NotFound(f"No {kind} found with id '{object_id}'.")


def bad_request(message: str, param: str | None = None, code: str | None = None
                ) -> InvalidRequest:
    return InvalidRequest(message, param, code)
