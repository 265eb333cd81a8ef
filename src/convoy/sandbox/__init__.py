"""Sandboxed tools: ``@convoy.tool(sandbox=convoy.Sandbox(...))`` runs each call in a
fresh, locked-down process (see :class:`Sandbox` and ``docs/how-to/sandbox.md``)."""

from convoy.sandbox._config import Sandbox, SandboxStop, ToolSandboxError

__all__ = ["Sandbox", "SandboxStop", "ToolSandboxError"]
