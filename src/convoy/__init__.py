"""Convoy: a durable, typed runtime for multi-agent LLM systems.

Define typed :class:`Agent` s, compose them in a :func:`workflow`, and run it on an
:class:`Engine`: every model call, tool call and handoff is journaled, so a crashed process
resumes where it stopped without paying for anything twice. ``engine.tenant("acme")`` is one
tenant's view of the engine (a :class:`Tenant`), reaching nothing of another tenant.
People decide through the inbox (``ctx.ask_human``, tool approvals, escalations:
``engine.inbox``), and tools declare the scopes an agent must be granted.
"""

# First of all, before any import (even of ``convoy._interrupt``: finding and compiling a
# module takes milliseconds): on the command line, Ctrl-C while the rest imports is one
# line, not a traceback. ``sys`` and ``os`` are loaded before any of Convoy runs.
import os as _os  # (isort: skip)
import sys as _sys  # (isort: skip)


def _command_line() -> bool:
    """Whether this process is the ``convoy`` command line (the ``convoy`` script, ``python
    -m convoy`` or ``python -m convoy.cli``)."""
    if _sys.argv and _os.path.basename(_sys.argv[0]) in ("convoy", "convoy.exe"):
        return True
    argv = list(getattr(_sys, "orig_argv", ()))
    return any(a == "-m" and argv[i + 1:i + 2] in (["convoy"], ["convoy.cli"])
               for i, a in enumerate(argv))


_excepthook = _sys.excepthook


def _interrupted_while_importing(kind: type[BaseException], exc: BaseException,
                                 tb: object) -> None:
    """``interrupted`` for a Ctrl-C that lands before :mod:`convoy._interrupt` (which says
    more, and takes over) sets its own hook; anything else as before."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=_sys.stderr)
    else:
        _excepthook(kind, exc, tb)  # type: ignore[arg-type]


if _command_line():
    _sys.excepthook = _interrupted_while_importing

import convoy._interrupt  # noqa: F401  (isort: skip)
from convoy._errors import (
    AgentTurnsExhausted,
    ApprovalRequired,
    AuditError,
    AuditProofError,
    BudgetExhausted,
    CircuitOpenError,
    ContentPolicyViolation,
    ContextWindowExceeded,
    ConvoyError,
    Escalated,
    HandoffError,
    HumanTimeout,
    JournalError,
    LimitExceeded,
    LoopDetected,
    ModelError,
    NonDeterminismError,
    OutputValidationError,
    PolicyDenied,
    RecordedError,
    Rejected,
    SessionsHeld,
    SessionTerminated,
    SessionUnreadable,
    StateConflict,
    StepError,
    StoreError,
    SubjectErased,
    TerminalReason,
    ToolDenied,
    ToolError,
    UnknownOutcomeError,
    UnknownSubject,
    UserError,
    WaitTimeout,
)
from convoy.alerts import BaselineAlerts, BaselinePolicy, Webhook
from convoy.cost._pricing import Price, PriceTable
from convoy.definitions._agent import Agent
from convoy.definitions._tool_runner import ToolThreads, ToolThreadsExhausted
from convoy.definitions._tools import Tool, ToolContext, tool
from convoy.definitions._workflow import Workflow, WorkflowNotFound, load_workflow, workflow
from convoy.durability import LeaseLost, Parked, SessionInterrupted
from convoy.engine._engine import ESCALATION, Engine
from convoy.engine._results import ReplayResult, SessionFailed, SessionResult
from convoy.engine._tenant import Tenant
from convoy.hitl._ask import HumanAnswer
from convoy.hitl._inbox import Inbox
from convoy.hitl._rules import Escalation
from convoy.hitl._task import Comment, Decision, HumanTask
from convoy.interceptors._accounting import StateStats, StepTimings, UsageAccounting
from convoy.interceptors._base import (
    AgentRunEnd,
    AgentRunEnded,
    AgentRunInput,
    DecisionInput,
    EffectInput,
    HandoffInput,
    Interceptor,
    ModelCallInput,
    Next,
    SessionEnd,
    SessionInfo,
    SessionInput,
    StateInput,
    StepInfo,
    ToolCallInput,
)
from convoy.models import Faults, Latency, Model, SimModel, infer_model
from convoy.models._messages import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ToolCall,
    ToolSpec,
    Usage,
)
from convoy.privacy import MasterKey
from convoy.runtime._context import Context
from convoy.runtime._limits import Limits
from convoy.runtime._patterns import decompose, fan_out, pipeline, supervisor
from convoy.sandbox import Sandbox, ToolSandboxError
from convoy.security._approval import Approval
from convoy.security._guard import ToolGuard, approved
from convoy.security._policy import ProvenancePolicy, ProvenanceRule
from convoy.security._provenance import Origin, Provenance, Untrusted
from convoy.security._redteam import RedteamReport, run_redteam
from convoy.security._spotlight import detect_injection, spotlight
from convoy.state import State, StateVersion, Versioned

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentRunEnd",
    "AgentRunEnded",
    "AgentRunInput",
    "AgentTurnsExhausted",
    "Approval",
    "ApprovalRequired",
    "AuditError",
    "AuditProofError",
    "BaselineAlerts",
    "BaselinePolicy",
    "BudgetExhausted",
    "CircuitOpenError",
    "Comment",
    "ContentPolicyViolation",
    "Context",
    "ContextWindowExceeded",
    "ConvoyError",
    "Decision",
    "DecisionInput",
    "ESCALATION",
    "EffectInput",
    "Engine",
    "Escalated",
    "Escalation",
    "Faults",
    "HandoffError",
    "HandoffInput",
    "HumanAnswer",
    "HumanTask",
    "HumanTimeout",
    "Inbox",
    "Interceptor",
    "JournalError",
    "Latency",
    "LeaseLost",
    "LimitExceeded",
    "Limits",
    "LoopDetected",
    "MasterKey",
    "Message",
    "Model",
    "ModelCallInput",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "Next",
    "NonDeterminismError",
    "Origin",
    "OutputValidationError",
    "Parked",
    "PolicyDenied",
    "Price",
    "PriceTable",
    "Provenance",
    "ProvenancePolicy",
    "ProvenanceRule",
    "RecordedError",
    "RedteamReport",
    "Rejected",
    "ReplayResult",
    "Sandbox",
    "SessionEnd",
    "SessionFailed",
    "SessionInfo",
    "SessionInput",
    "SessionInterrupted",
    "SessionResult",
    "SessionTerminated",
    "SessionUnreadable",
    "SessionsHeld",
    "SimModel",
    "State",
    "StateConflict",
    "StateInput",
    "StateStats",
    "StateVersion",
    "StepError",
    "StepInfo",
    "StepTimings",
    "StoreError",
    "SubjectErased",
    "Tenant",
    "TerminalReason",
    "Tool",
    "ToolCall",
    "ToolCallInput",
    "ToolContext",
    "ToolDenied",
    "ToolError",
    "ToolGuard",
    "ToolSandboxError",
    "ToolSpec",
    "ToolThreads",
    "ToolThreadsExhausted",
    "UnknownOutcomeError",
    "UnknownSubject",
    "Untrusted",
    "Usage",
    "UsageAccounting",
    "UserError",
    "Versioned",
    "WaitTimeout",
    "Webhook",
    "Workflow",
    "WorkflowNotFound",
    "__version__",
    "approved",
    "decompose",
    "detect_injection",
    "fan_out",
    "infer_model",
    "load_workflow",
    "pipeline",
    "run_redteam",
    "spotlight",
    "supervisor",
    "tool",
    "workflow",
]
