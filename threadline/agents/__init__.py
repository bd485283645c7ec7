"""Agents: prompt templates, a model, and a state machine of async handlers."""

from .agent import Agent, Handler
from .turn import Turn

__all__ = ["Agent", "Handler", "Turn"]
