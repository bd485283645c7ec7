"""Agents: prompt templates, a model, and a state machine of async handlers."""

from .agent import Agent, Exhausted, Handler
from .turn import Turn

__all__ = ["Agent", "Exhausted", "Handler", "Turn"]
