"""`@workflow` and `@step`: how user functions become durable."""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from ..errors import ConfigurationError
from .retry import NO_RETRY, RetryPolicy

if TYPE_CHECKING:
    from .context import WorkflowContext

P = ParamSpec("P")
R = TypeVar("R")

WorkflowFn = Callable[..., Awaitable[Any]]
W = TypeVar("W", bound=WorkflowFn)


@dataclass(frozen=True)
class Workflow:
    """A registered workflow: its function, its name and where it queues by default."""

    fn: WorkflowFn
    name: str
    queue: str = "default"

    @functools.cached_property
    def source_hash(self) -> str:
        try:
            source = inspect.getsource(self.fn)
        except (OSError, TypeError):
            source = self.name
        return hashlib.sha256(source.encode()).hexdigest()


@dataclass(frozen=True)
class StepOptions:
    name: str
    retry: RetryPolicy = NO_RETRY
    timeout: float | None = None
    # Running the body again is harmless (it only reads, or its writes are keyed): its record
    # rides with the run's next write, not awaited by the next body (see `step`).
    idempotent: bool = False


@dataclass
class Registry:
    """Workflows by name. The module-level `default_registry` backs the bare decorators."""

    workflows: dict[str, Workflow] = field(default_factory=dict)

    def add(self, wf: Workflow) -> None:
        existing = self.workflows.get(wf.name)
        if existing is not None and existing.fn is not wf.fn:
            raise ConfigurationError(f"two workflows are named {wf.name!r}")
        self.workflows[wf.name] = wf

    def get(self, name: str) -> Workflow | None:
        return self.workflows.get(name)

    def version(self) -> str:
        """A code version: the hash of every registered workflow's source."""
        digest = hashlib.sha256()
        for name in sorted(self.workflows):
            digest.update(name.encode())
            digest.update(self.workflows[name].source_hash.encode())
        return digest.hexdigest()[:12]


default_registry = Registry()


def workflow_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


@overload
def workflow(fn: W, /) -> W: ...
@overload
def workflow(
    *, name: str | None = None, queue: str = "default", registry: Registry | None = None
) -> Callable[[W], W]: ...
def workflow(
    fn: W | None = None,
    *,
    name: str | None = None,
    queue: str = "default",
    registry: Registry | None = None,
) -> W | Callable[[W], W]:
    """Mark an `async def f(ctx, ...)` as a durable workflow. Usable bare or with options."""

    def wrap(f: W) -> W:
        if not inspect.iscoroutinefunction(cast(Any, f)):
            raise ConfigurationError(f"workflow {f.__qualname__} must be an async def")
        wf = Workflow(f, name or workflow_name(f), queue)
        (registry or default_registry).add(wf)
        f.__threadline_workflow__ = wf  # type: ignore[attr-defined]
        return f

    return wrap(fn) if fn is not None else wrap


def as_workflow(target: WorkflowFn | str, registry: Registry) -> Workflow | str:
    """The registered Workflow for a function, or the name as given for a string."""
    if isinstance(target, str):
        return registry.get(target) or default_registry.get(target) or target
    wf: Workflow | None = getattr(target, "__threadline_workflow__", None)
    if wf is None:
        raise ConfigurationError(f"{target!r} is not a @workflow")
    return wf


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...
@overload
def step(
    *,
    name: str | None = None,
    retries: int = 0,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...
def step(
    fn: Callable[P, Awaitable[R]] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    read_only: bool = False,
    idempotent: bool = False,
) -> Any:
    """Make a function a durable step: inside a workflow each call is journaled.

    Outside a workflow the function runs as a plain call, so steps stay easy to test.
    `read_only`, `idempotent`: see `WorkflowContext.step`.
    """

    def wrap(f: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        policy = retry or (RetryPolicy(max_attempts=retries + 1) if retries else NO_RETRY)
        options = StepOptions(name or f.__qualname__, policy, timeout, read_only or idempotent)

        @functools.wraps(f)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            from .context import current_context

            ctx: WorkflowContext | None = current_context()
            if ctx is None:
                return await f(*args, **kwargs)
            result: R = await ctx.run_step(f, options, args, kwargs)
            return result

        run.__threadline_step__ = options  # type: ignore[attr-defined]
        return run

    return wrap(fn) if fn is not None else wrap
