"""Durable workflows: steps journaled in PostgreSQL, replayed on recovery."""

from .context import WorkflowContext, current_context
from .engine import Engine, Event, RunHandle
from .registry import Registry, Workflow, step, workflow
from .retry import RetryPolicy
from .store import RunInfo, StepInfo
from .worker import Queue

__all__ = [
    "Engine",
    "Event",
    "Queue",
    "Registry",
    "RetryPolicy",
    "RunHandle",
    "RunInfo",
    "StepInfo",
    "Workflow",
    "WorkflowContext",
    "current_context",
    "step",
    "workflow",
]
