"""`CallOptions`: everything about one model call besides its messages, in one object that
every `Model` of a stack takes and passes down.

The four generation settings are the provider's. `context` carries what the layers that wrap
a model need to know about the call, each finding its own entry by type: the ledger its
scope and budget (`threadline.ledger.Metering`), the cache its key. This package defines
none of them and never reads them: a provider adapter ignores the context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from .messages import ToolDef

__all__ = ["CallOptions"]

T = TypeVar("T")

_SETTINGS = frozenset(("tools", "max_tokens", "temperature", "stop"))


@dataclass(frozen=True)
class CallOptions:
    """How to make one call: tools offered, output bound, sampling, stop sequences, and the
    context entries of the layers above (at most one per type)."""

    tools: Sequence[ToolDef] = ()
    max_tokens: int = 1024
    temperature: float | None = None
    stop: Sequence[str] | None = None
    context: tuple[object, ...] = ()

    @classmethod
    def of(cls, options: CallOptions | None = None, **settings: Any) -> CallOptions:
        """`options` (or the defaults) with some settings changed: what `Model.request`
        does with keyword arguments (`model.request(messages, max_tokens=200)`)."""
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise TypeError(f"unknown call settings {sorted(unknown)}; known: {sorted(_SETTINGS)}")
        base = options if options is not None else _DEFAULT
        return replace(base, **settings) if settings else base

    def get(self, kind: type[T]) -> T | None:
        """The context entry of type `kind`, if the caller set one."""
        for entry in self.context:
            if isinstance(entry, kind):
                return entry
        return None

    def with_(self, *entries: object, **settings: Any) -> CallOptions:
        """These options with `entries` set in the context (each replacing the entry of its
        type) and some settings changed."""
        context = self.context
        if entries:
            kinds = tuple(type(e) for e in entries)
            context = (*(c for c in context if not isinstance(c, kinds)), *entries)
        return replace(CallOptions.of(self, **settings), context=context)

    def settings(self) -> dict[str, Any]:
        """The provider's settings alone (what a cassette or a log records)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in _SETTINGS}


_DEFAULT = CallOptions()


def settings_of(
    options: CallOptions,
) -> tuple[Sequence[ToolDef], int, float | None, Sequence[str] | None]:
    """The four settings, in the order the adapters' request builders take them."""
    return options.tools, options.max_tokens, options.temperature, options.stop
