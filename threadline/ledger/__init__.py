"""The cost ledger and budgets: a row per LLM call with its tokens and price, reports, metered
calls, and limits that reservations keep every call within."""

from .admission import CallBudget, Receipt
from .budgets import Budgets, BudgetState
from .ledger import Ledger
from .limits import BoundBudget, Budget, BudgetExceeded, Mode, ScopeRef
from .metered import CallNote, MeteredModel, Metering, refusal_of
from .outcomes import BudgetNotice, Capped, Grant, Refusal
from .queries import GROUPINGS
from .record import CallRecord
from .reports import CostRow, cost_report
from .scope import Scope

__all__ = [
    "GROUPINGS",
    "BoundBudget",
    "Budget",
    "BudgetExceeded",
    "BudgetNotice",
    "BudgetState",
    "Budgets",
    "CallBudget",
    "CallNote",
    "CallRecord",
    "Capped",
    "CostRow",
    "Grant",
    "Ledger",
    "MeteredModel",
    "Metering",
    "Mode",
    "Receipt",
    "Refusal",
    "Scope",
    "ScopeRef",
    "cost_report",
    "refusal_of",
]
