"""threadline: durable, cost-aware LLM conversations and workflows on PostgreSQL."""

from .agents import Agent, Exhausted, Turn
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
from .ledger import Budget, BudgetExceeded, BudgetNotice, Budgets, Ledger, MeteredModel, Scope
from .llm import CallOptions, LLMError, Message, Model, get_model
from .loop import run
from .router import (
    CooldownPolicy,
    Fallback,
    FallbackModel,
    ModelPolicy,
    Models,
    NoModelAvailable,
    Restart,
    RoutedResponse,
    call_model,
)
from .sessions import Sessions
from .tools import Tool, tool

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Budget",
    "BudgetExceeded",
    "BudgetNotice",
    "Budgets",
    "CallOptions",
    "ConfigurationError",
    "CooldownPolicy",
    "DatabaseUnavailable",
    "Engine",
    "Event",
    "Exhausted",
    "Fallback",
    "FallbackModel",
    "LLMError",
    "Ledger",
    "Message",
    "MeteredModel",
    "Model",
    "ModelPolicy",
    "Models",
    "NoModelAvailable",
    "NonDeterminismError",
    "NotSerializable",
    "PayloadTooLarge",
    "Queue",
    "Registry",
    "Restart",
    "RetryPolicy",
    "RoutedResponse",
    "RunHandle",
    "SchemaError",
    "Scope",
    "Sessions",
    "StepError",
    "ThreadlineError",
    "Tool",
    "Turn",
    "UnknownRun",
    "UnknownWorkflow",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowFailed",
    "call_model",
    "get_model",
    "run",
    "step",
    "tool",
    "workflow",
]
