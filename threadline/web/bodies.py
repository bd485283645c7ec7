"""The JSON bodies the REST routes take, with the sizes they accept."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from ..sessions.text import storable


def _storable(text: str) -> str:
    """Text PostgreSQL can store: a NUL is refused here (422, naming the field), not failed
    inside a query (500)."""
    if not storable(text):
        raise ValueError("contains a NUL character or an unpaired surrogate, which is not text")
    return text


StoredText = Annotated[str, AfterValidator(_storable)]


class NewKey(BaseModel):
    tenant: StoredText = Field(min_length=1, max_length=200)
    name: StoredText = Field(default="", max_length=200)


class NewSession(BaseModel):
    agent: str = Field(min_length=1, max_length=100)
    user: StoredText | None = Field(default=None, max_length=200)
    tenant: StoredText | None = Field(default=None, max_length=200)


class OperatorReply(BaseModel):
    text: str | None = Field(default=None, max_length=8000)
    operator: str = Field(default="operator", max_length=100)
    state: str | None = Field(default=None, max_length=100)


class Rating(BaseModel):
    turn_id: StoredText = Field(min_length=1, max_length=200)
    rating: str | None = Field(default=None, pattern="^(up|down)$")  # None takes it back
    comment: str | None = Field(default=None, max_length=2000)


class SessionChange(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class NewMessage(BaseModel):
    client_id: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1)
