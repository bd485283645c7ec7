"""What a route answers besides its success, as the OpenAPI schema declares it. Clients are
generated from the schema, so every refusal a route can give is listed with the shape of its
body (tests/security/test_schema_fuzz.py holds the server to it)."""

# No `from __future__ import annotations`: FastAPI reads these models at run time.

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel

from ..errors import ConfigurationError, PayloadTooLarge
from ..sessions import UnknownSession


class Problem(BaseModel):
    """A refusal's body: its reason, in words."""

    detail: str


class FieldError(BaseModel):
    """One reason a request was refused, as FastAPI gives it (with `input` and `ctx`)."""

    loc: list[str | int]
    msg: str
    type: str


class Unprocessable(BaseModel):
    """A 422: FastAPI's field errors, or, for a value only the route can judge (a state the
    agent lacks, a report no one can group by), its reason in words."""

    detail: list[FieldError] | str


REASONS = {
    400: "The body is not JSON",
    401: "No credential, or one that is not valid (expired, forged)",
    403: "A token for another session, or an origin that is not allowed",
    404: "No such session, agent or answer",
    413: "The body or the message is larger than the server allows",
    422: "Validation Error",
    429: "Too many requests: `retry-after` says when to try again",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that may refuse with `codes`."""
    return {
        code: {"model": Unprocessable if code == 422 else Problem, "description": REASONS[code]}
        for code in codes
    }


def event_stream(description: str) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route whose success is a server-sent event stream (with
    `response_class=StreamingResponse`, which declares no content of its own)."""
    return {200: {"description": description, "content": {"text/event-stream": {}}}}


@contextlib.contextmanager
def message_refusals() -> Iterator[None]:
    """What sending a message to a session may refuse, as its answer: no such session (404),
    a message larger than the server takes (413), a value the agent cannot take (422)."""
    try:
        yield
    except PayloadTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except UnknownSession as exc:
        raise HTTPException(404, str(exc)) from None
    except ConfigurationError as exc:
        raise HTTPException(422, str(exc)) from None
