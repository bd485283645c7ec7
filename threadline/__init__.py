"""threadline: durable, cost-aware LLM conversations and workflows on PostgreSQL."""

from .engine import (
    Engine,
    Event,
    Queue,
    Registry,
    RetryPolicy,
    RunHandle,
    WorkflowContext,
    step,
    workflow,
)
from .errors import (
    ConfigurationError,
    DatabaseUnavailable,
    NonDeterminismError,
    NotSerializable,
    PayloadTooLarge,
    SchemaError,
    StepError,
    ThreadlineError,
    UnknownRun,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowFailed,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "Engine",
    "Event",
    "NonDeterminismError",
    "NotSerializable",
    "PayloadTooLarge",
    "Queue",
    "Registry",
    "RetryPolicy",
    "RunHandle",
    "SchemaError",
    "StepError",
    "ThreadlineError",
    "UnknownRun",
    "UnknownWorkflow",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowFailed",
    "step",
    "workflow",
]
