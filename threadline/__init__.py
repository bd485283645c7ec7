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
from .ledger import LLM, Budget, BudgetExceeded, BudgetNotice, Budgets, Ledger, Scope
from .llm import LLMError, Message, Model, get_model
from .loop import run
from .router import (
    CooldownPolicy,
    Fallback,
    ModelPolicy,
    NoModelAvailable,
    Restart,
    RoutedResponse,
    Router,
)
from .sessions import Sessions
from .tools import Tool, tool

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "Agent",
    "Budget",
    "BudgetExceeded",
    "BudgetNotice",
    "Budgets",
    "ConfigurationError",
    "CooldownPolicy",
    "DatabaseUnavailable",
    "Engine",
    "Event",
    "Exhausted",
    "Fallback",
    "LLMError",
    "Ledger",
    "Message",
    "Model",
    "ModelPolicy",
    "NoModelAvailable",
    "NonDeterminismError",
    "NotSerializable",
    "PayloadTooLarge",
    "Queue",
    "Registry",
    "Restart",
    "RetryPolicy",
    "RoutedResponse",
    "Router",
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
    "get_model",
    "run",
    "step",
    "tool",
    "workflow",
]
