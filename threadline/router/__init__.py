"""Model selection: chains of models with fallback, per-model cooldowns shared through the
database, budgets that choose the best model the remaining money affords, and `Models`,
which builds each model's stack once and calls it durably."""

from .cooldowns import CooldownPolicy, Cooldowns, ModelHealth
from .durable import call_model
from .events import Capped, Fallback, NoModelAvailable, Restart, RouterEvent
from .fallback import FallbackModel
from .models import Models, worth_retrying
from .policy import ModelPolicy
from .route import RoutedResponse, RouteSummary

__all__ = [
    "Capped",
    "CooldownPolicy",
    "Cooldowns",
    "Fallback",
    "FallbackModel",
    "ModelHealth",
    "ModelPolicy",
    "Models",
    "NoModelAvailable",
    "Restart",
    "RouteSummary",
    "RoutedResponse",
    "RouterEvent",
    "call_model",
    "worth_retrying",
]
