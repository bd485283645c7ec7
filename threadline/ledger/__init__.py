"""The cost ledger and budgets: a row per LLM call with its tokens and price, reports, metered
calls, and limits that reservations keep every call within."""

from .admission import CallBudget
from .budgets import Budgets, BudgetState
from .ledger import Ledger
from .limits import Budget, BudgetExceeded, Mode, ScopeRef
from .metered import LLM, CallNote, CallOptions, Receipt
from .record import CallRecord
from .reports import GROUPINGS, CostRow, cost_report
from .reservations import BudgetNotice, Grant, Refusal
from .scope import Scope

__all__ = [
    "GROUPINGS",
    "LLM",
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
