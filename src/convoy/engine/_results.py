"""What the engine returns: a session's result, a replay's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from pydantic import ValidationError

from convoy._errors import ConvoyError, SessionUnreadable, TerminalReason, UserError
from convoy._text import escaped, readable_validation_error, validation_error_types
from convoy.models._messages import Usage
from convoy.stores._protocol import RUNNABLE, SessionRow
from convoy.stores._rows import DamagedRow

if TYPE_CHECKING:
    from convoy.definitions._workflow import Workflow

OutT = TypeVar("OutT")

#: How a call to the engine left a session: a terminal reason, or still unfinished.
ResultStatus = TerminalReason | Literal["waiting", "pending", "running"]


class SessionFailed(ConvoyError):
    """:meth:`SessionResult.raise_for_status` on a session that did not complete."""

    def __init__(self, message: str, *, session_id: str = "", status: str = "",
                 error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.status = status
        self.error = error


@dataclass(slots=True, kw_only=True)
class SessionResult(Generic[OutT]):
    """How a session ended, or where it stands.

    ``status`` is a terminal reason (``completed``, ``failed``, ``escalated``, ...) or, for a
    session that is not finished, ``waiting`` (parked on a timer or a signal), ``pending``
    (interrupted: a store error or a lost lease; another run continues it) or ``running``
    (another engine owns it). ``output`` is set when ``status == "completed"``.

    ``already_finished`` is true when the session had finished before the call that
    returned this result (on this engine or another, which may have finished it while
    the call began): the result is the stored one, and the call ran nothing of it (its
    ``usage``, ``cost`` and ``duration_s`` are of the run that finished it).
    """

    id: str
    status: ResultStatus
    output: OutT | None = None
    error: dict[str, Any] | None = None
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    duration_s: float = 0.0
    already_finished: bool = False

    @property
    def ok(self) -> bool:
        """Whether the session completed."""
        return self.status == "completed"

    @property
    def finished(self) -> bool:
        """Whether the session reached a terminal status (not waiting, pending or running)."""
        return self.status not in ("waiting", "pending", "running")

    def raise_for_status(self) -> SessionResult[OutT]:
        """Return ``self`` if the session completed, else raise :class:`SessionFailed`."""
        if self.status != "completed":
            why = (self.error or {}).get("message") or self.status
            raise SessionFailed(f"session {self.id!r} is {self.status}: {why}",
                                session_id=self.id, status=self.status, error=self.error)
        return self


@dataclass(slots=True, kw_only=True)
class ReplayResult:
    """``convoy replay``: did re-executing the journal reach the recorded result?"""

    id: str
    matches: bool
    status: str
    recorded_status: str
    output: str | None
    recorded_output: str | None
    steps: int
    error: dict[str, Any] | None = None
    recorded_error: dict[str, Any] | None = None
    #: A session stopped from outside its steps (``cancelled``, ``limit_exceeded``) whose
    #: replay reached where it stopped: the key of the step it was at (one the journal
    #: does not hold, a wait no signal ended, a timer that had not fired). Replay stops
    #: there, firing and delivering nothing: that is the same result.
    stopped_at: str | None = None


# -- building results from stored sessions (for the engine) ---------------------------


def _result_of(wf: Workflow[Any, OutT], row: SessionRow) -> SessionResult[OutT]:
    """The stored result of a finished session; :class:`StoredOutputUnreadable` if its
    output is not what ``wf`` returns (its type changed since; a value its type's JSON
    does not keep, a model's NaN written as ``null``)."""
    if not row.output:
        return _stored_result(row, None)
    try:
        output = wf.output_adapter.validate_json(row.output)
    except ValidationError as e:
        said = escaped(readable_validation_error(e)) if row.subject is None else \
            "; ".join(validation_error_types(e))
        said = said if len(said) <= 500 else said[:499] + "…"
        raise StoredOutputUnreadable(
            f"session {row.id!r} completed, but its stored output is not what workflow "
            f"{wf.name!r} returns ({said}); engine.result({row.id!r}) reads it as JSON, "
            f"as 'convoy sessions show' shows it") from None
    return _stored_result(row, output)


class StoredOutputUnreadable(UserError):
    """A finished session's stored output does not validate as its workflow's output
    type (:func:`_result_of`)."""


def _stored_result(row: SessionRow, output: OutT | None) -> SessionResult[OutT]:
    """The stored result of a finished session, with its output decoded by the caller."""
    return SessionResult(
        id=row.id, status=row.status, output=output, error=row.error_record, steps=row.steps,
        usage=Usage(row.input_tokens, row.output_tokens), cost=row.cost,
        duration_s=(row.finished or 0) - (row.started or row.created),
        already_finished=True)


def _unfinished_result(row: SessionRow) -> SessionResult[Any]:
    status = row.status if row.status in ("waiting", "pending") else "running"
    return SessionResult(id=row.id, status=cast(ResultStatus, status), steps=row.steps,
                         usage=Usage(row.input_tokens, row.output_tokens),
                         cost=row.cost)


def _version_skip(wf: Workflow[Any, Any], row: SessionRow) -> SessionResult[Any]:
    res = _unfinished_result(row)
    res.status = "pending" if row.status in RUNNABLE else res.status
    res.error = {"type": "VersionMismatch", "message": (
        f"session {row.id!r} started on version {row.version!r} of workflow {row.workflow!r} "
        f"but this code is version {wf.version!r}; it stays unfinished until an engine with "
        f"version {row.version!r} resumes it")}
    return res


def _workflow_skip(row: SessionRow, problem: str, kind: str = "WorkflowNotFound"
                   ) -> SessionResult[Any]:
    """The result of a session that must run but that this process cannot run: its
    workflow cannot be loaded here (``problem``: why, and how to load it), or ``kind``
    says what else is missing."""
    res = _unfinished_result(row)
    res.status = "pending" if row.status in RUNNABLE else res.status
    res.error = {"type": kind, "message": (
        problem if kind != "WorkflowNotFound" else
        f"session {row.id!r} was not resumed: {problem}")}
    return res


def needs_master_key(row: SessionRow) -> str:
    """Why a data subject's session cannot run on an engine without the master key."""
    return (f"session {row.id!r} (tenant {row.tenant!r}): it is a data subject's, and its "
            "input and journal are sealed; set $CONVOY_MASTER_KEY_FILE to the store's master "
            "key file (in Python: Engine(master_key=...))")


def unreadable(wf: Workflow[Any, Any], row: SessionRow, problem: Exception
               ) -> SessionUnreadable:
    """Why a claimed session cannot run here (see :class:`SessionUnreadable`): a stored
    value of it is damaged (:class:`DamagedRow`), or its stored input is not what ``wf``
    takes (any other error of the input type's validation). One line: the validation
    error's fields and messages, escaped (a field can be a key of a mapping input); for a
    data subject's session, its error types alone."""
    if isinstance(problem, DamagedRow):
        what = f"{problem}; repair the store"
    else:
        if not isinstance(problem, ValidationError):
            said = f"its validation raised {type(problem).__name__}"
        elif row.subject is None:
            said = escaped(readable_validation_error(problem))
            said = said if len(said) <= 500 else said[:499] + "…"
        else:
            said = "; ".join(validation_error_types(problem))
        what = (f"its stored input is not what workflow {wf.name!r} takes ({said}); fix the "
                "workflow's code (or the stored input)")
    return SessionUnreadable.of(row.id, what)


__all__ = ["ReplayResult", "ResultStatus", "SessionFailed", "SessionResult"]
