"""The demo bots `threadline serve` shows: a memoir interviewer and a support assistant."""

from .agents import AGENTS, memoir, support

__all__ = ["AGENTS", "memoir", "support"]
