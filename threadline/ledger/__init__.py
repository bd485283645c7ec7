"""The cost ledger and budgets: a row per LLM call with its tokens and price, reports, metered
calls, and limits that reservations keep every call within."""

from .admission import CallBudget, Receipt
from .budgets import Budgets, BudgetState
from .ledger import Ledger
from .limits import BoundBudget, Budget, BudgetExceeded, Mode, ScopeRef
from .metered import LLM, CallNote, CallOptions
from .outcomes import BudgetNotice, Grant, Refusal
from .record import CallRecord
from .reports import GROUPINGS, CostRow, cost_report
from .scope import Scope

__all__ = [
    "GROUPINGS",
    "LLM",
    "BoundBudget",
    "Budget",
    "BudgetExceeded",
    "BudgetNotice",
    "BudgetState",
    "Budgets",
    "CallBudget",
    "CallNote",
    "CallOptions",
    "CallRecord",
    "CostRow",
    "Grant",
    "Ledger",
    "Mode",
    "Receipt",
    "Refusal",
    "Scope",
    "ScopeRef",
    "cost_report",
]
