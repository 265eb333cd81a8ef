"""What a sandboxed tool may use (:class:`Sandbox`), and the error a call gets when the
sandbox stops or refuses it (:class:`ToolSandboxError`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from convoy._errors import ToolError, UserError

#: What stopped a sandboxed call: a :class:`Sandbox` limit by its field name, a refusal
#: (``"network"``, ``"filesystem"``), the child's own death (``"crashed"``), or a sandbox
#: this machine cannot build (``"unavailable"``).
SandboxStop = Literal["cpu_seconds", "memory_mb", "wall_seconds", "max_processes", "file_mb",
                      "network", "filesystem", "crashed", "unavailable"]


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    """Run a tool in a separate, restricted process: ``@convoy.tool(sandbox=Sandbox(...))``.

    Each call gets a fresh Python interpreter (not a fork of the engine, so none of the
    engine's memory, credentials or environment), a new temporary working directory
    (``HOME`` and ``TMPDIR`` too) removed afterwards, and these limits. Arguments and the
    result cross the process boundary as JSON, validated by the tool's types on both sides.
    What each limit rests on, and what the sandbox does not protect against, is in
    ``docs/how-to/sandbox.md``.

    Args:
        cpu_seconds: CPU time of the call, in whole seconds (``RLIMIT_CPU``, per process).
        memory_mb: address space the call may add to the interpreter with the tool's
            module loaded (``RLIMIT_AS``); thread stacks count.
        wall_seconds: time from handing the call to the process until its answer; then
            every process of the call is killed.
        start_seconds: time a new sandbox process has to import the tool and lock itself
            down (not counted in ``wall_seconds``).
        max_processes: processes *and threads* the call may have at once, itself included
            (``RLIMIT_NPROC`` under a user id of its own).
        file_mb: largest file the call may write (``RLIMIT_FSIZE``).
        network: allow network access. Off: a network namespace without interfaces, TCP
            refused by Landlock, ``socket()`` refused by seccomp.
        read_paths: directories or files the call may read besides the Python installation,
            the system's libraries and ``/etc``; it may write only its temporary directory.
        env: environment variables for the call; nothing else of the engine's environment
            is passed (``PATH``, ``LANG``, ``HOME`` and ``TMPDIR`` are set for it).
        warm: processes kept started and locked down ahead of calls (each serves one call),
            to take the interpreter's start-up off the call's latency.
        max_concurrent: calls of the tools sharing this ``Sandbox`` that run at once (per
            event loop); more wait their turn, so a burst of sessions cannot start
            processes without end.
    """

    cpu_seconds: float = 10
    memory_mb: int = 512
    wall_seconds: float = 30
    start_seconds: float = 30
    max_processes: int = 16
    file_mb: int = 64
    network: bool = False
    read_paths: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    warm: int = 0
    max_concurrent: int = 16

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_mb", "wall_seconds", "start_seconds",
                     "max_processes", "file_mb", "max_concurrent"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0 \
                    or not math.isfinite(value):
                raise UserError(f"Sandbox {name} must be a positive number, got {value!r}")
        if self.warm < 0:
            raise UserError(f"Sandbox warm must be >= 0, got {self.warm!r}")
        if isinstance(self.read_paths, str):
            raise UserError("Sandbox read_paths must be a tuple of paths, not one string")
        object.__setattr__(self, "read_paths", tuple(str(p) for p in self.read_paths))
        bad = [k for k, v in self.env.items() if not isinstance(k, str) or
               not isinstance(v, str) or "=" in k or not k]
        if bad:
            raise UserError(f"Sandbox env must map names to strings; bad entries: {bad!r}")
        object.__setattr__(self, "env", dict(self.env))

    def limit_value(self, stop: SandboxStop) -> Any:
        """The configured value of a limit (``None`` for refusals and crashes)."""
        return getattr(self, stop, None) if stop in _LIMITS else None


_LIMITS = frozenset({"cpu_seconds", "memory_mb", "wall_seconds", "max_processes", "file_mb"})


class ToolSandboxError(ToolError):
    """A sandboxed tool call was stopped or refused by its sandbox, or its process died.

    ``limit`` names what: a :class:`Sandbox` limit (``"memory_mb"``, ``"cpu_seconds"``,
    ``"wall_seconds"``, ``"max_processes"``, ``"file_mb"``), a refusal (``"network"``,
    ``"filesystem"``), ``"crashed"`` (the process died without answering: ``exit_code``
    or ``signal`` says how) or ``"unavailable"`` (this machine cannot build the sandbox).
    The model is told the same in the tool's answer (``details["sandbox"]``). Not
    retryable: the same call would meet the same limit.
    """

    kind = "tool_sandbox"

    def __init__(self, message: str, *, limit: SandboxStop, value: Any = None,
                 exit_code: int | None = None, signal: str | None = None) -> None:
        super().__init__(message, retryable=False, details={
            "sandbox": {"stopped_by": limit, **({"limit": value} if value is not None else {})}})
        self.limit = limit
        self.value = value
        self.exit_code = exit_code
        self.signal = signal
