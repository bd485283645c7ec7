"""Tools: plain typed Python functions the model may call."""

from .tool import Tool, ToolError, tool

__all__ = ["Tool", "ToolError", "tool"]
