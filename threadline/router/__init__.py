"""Model selection: chains of models with fallback, per-model cooldowns shared through the
database, and budgets that choose the best model the remaining money affords."""

from .cooldowns import CooldownPolicy, Cooldowns, ModelHealth
from .events import Capped, Fallback, NoModelAvailable, Restart, RouterEvent
from .policy import ModelPolicy
from .route import RoutedResponse
from .router import Router, worth_retrying

__all__ = [
    "Capped",
    "CooldownPolicy",
    "Cooldowns",
    "Fallback",
    "ModelHealth",
    "ModelPolicy",
    "NoModelAvailable",
    "Restart",
    "RoutedResponse",
    "Router",
    "RouterEvent",
    "worth_retrying",
]
