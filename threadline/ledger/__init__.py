"""The cost ledger: a row per LLM call with its tokens and price, reports, metered calls."""

from .ledger import Ledger
from .metered import LLM, CallNote, CallOptions
from .record import CallRecord
from .reports import GROUPINGS, CostRow, cost_report
from .scope import Scope

__all__ = [
    "GROUPINGS",
    "LLM",
    "CallNote",
    "CallOptions",
    "CallRecord",
    "CostRow",
    "Ledger",
    "Scope",
    "cost_report",
]
