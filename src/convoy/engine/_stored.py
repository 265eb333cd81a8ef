"""What a run that executes nothing needs of a session's workflow, as the session stored it.

``engine.cancel`` ends a session whose run was killed (or never began) in a run of its own
that executes nothing, so its session hooks see it end (audit appends the steps the killed
run journaled). That run reads only the workflow's name, version and agents: an engine
that does not have the session's workflow at its version (an operator's, the command
line's) runs it with the name and version the session was started with, and no agents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredWorkflow:
    """A session's workflow as its row names it (see the module docstring)."""

    name: str
    version: str
    agents: Mapping[str, Any] = field(default_factory=dict)


__all__ = ["StoredWorkflow"]
