"""The demo bots `threadline serve` shows: a memoir interviewer and a support assistant."""

from .agents import AGENTS, support
from .memoir import memoir, memoir_markdown

__all__ = ["AGENTS", "memoir", "memoir_markdown", "support"]
