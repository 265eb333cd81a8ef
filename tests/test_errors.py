"""Errors round-trip through the journal (records) and through pickle, with their
attributes; session signals are not swallowed by ``except Exception``."""

from __future__ import annotations

import inspect
import json
import pickle
from typing import Any

import pytest

import convoy
from convoy._errors import error_from_record, error_to_record


@pytest.mark.parametrize("exc", [
    convoy.ModelError("HTTP 429", retryable=True, status_code=429, retry_after=2.5),
    convoy.ToolError("tool 'x' raised", retryable=False),
    convoy.OutputValidationError("bad", retryable=True),
    convoy.CircuitOpenError("open"),
    convoy.UnknownOutcomeError("unknown"),
    convoy.NonDeterminismError("changed", key="2/0/1"),
    convoy.LoopDetected("ping-pong"),
    convoy.BudgetExhausted("spent"),
])
def test_errors_round_trip(exc: BaseException) -> None:
    for again in (error_from_record(error_to_record(exc)), pickle.loads(pickle.dumps(exc))):
        assert type(again) is type(exc) and str(again) == str(exc)
        for attr in ("retryable", "status_code", "retry_after", "key", "reason"):
            assert getattr(again, attr, None) == getattr(exc, attr, None), attr


def test_session_signals_escape_except_exception() -> None:
    assert not issubclass(convoy.SessionTerminated, Exception)
    assert convoy.BudgetExhausted("x").reason == "budget_exhausted"
    assert convoy.Escalated("x").reason == "escalated"


# -- every Convoy error, wherever it is defined ------------------------------------------

class QuotaExceeded(convoy.ModelError):
    """A user's error with an ``__init__`` of its own."""

    def __init__(self, tenant: str, limit: int) -> None:
        super().__init__(f"tenant {tenant!r} is over its quota of {limit}", retryable=True,
                         status_code=429)
        self.tenant, self.limit = tenant, limit


class Overrun(convoy.SessionTerminated):
    reason = "limit_exceeded"

    def __init__(self, *, what: str, used: float) -> None:
        super().__init__(f"{what} overran: {used}")
        self.what, self.used = what, used


class QuotaError(Exception):
    """A user's plain exception, built from its args."""


class Unbuildable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}+{b}")


#: Values for constructor parameters, chosen unlike their defaults so that a lost
#: attribute shows.
SAMPLES: dict[str, Any] = {
    "message": "it broke", "retryable": True, "status_code": 503, "retry_after": 1.5,
    "problem": "its stored cost 'nan' is not a number",
    "key": "0/1/2", "transient": True, "original_type": "SomeLibError", "reason": "escalated",
    "session_id": "s-1", "status": "failed", "error": {"type": "X", "message": "m"},
    "tenant": "acme", "limit": 10, "what": "tool", "used": 2.5, "timeout": True,
    "details": {"conflict": {"current_version": 2}}, "namespace": "customer:42",
    "expected_version": 1, "current_version": 2, "current_value": {"credit": 5},
    "agent": "billing", "max_turns": 8, "tool": "refund", "missing": ["payments:refund"],
    "by": "alice", "rule": "requires_approval", "grant": "budget:session:s-1",
    "comment": "too much", "task_id": "s-1:0/3", "value": 64, "exit_code": 3,
    "signal": "SIGKILL", "index": 7, "subject": "customer-42", "seq": 3, "at": 1700000000.5,
    "workflow": "docs.refund",
    "transcript": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "content": None,
                    "tool_calls": [{"id": "c1", "name": "poll", "arguments": "{}"}]}],
}


def subclasses(root: type[BaseException]) -> list[type[BaseException]]:
    out, todo = [], [root]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def instance(cls: type[BaseException]) -> BaseException:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    try:
        params = inspect.signature(cls).parameters
    except ValueError:  # BaseException's own __init__: it takes the message
        return cls(SAMPLES["message"])
    for name, p in params.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if name == "args" and not args:
                args.append(SAMPLES["message"])
            continue
        if name not in SAMPLES:
            raise AssertionError(f"{cls.__qualname__}({name}=...): add a sample value")
        if p.kind == p.KEYWORD_ONLY:
            kwargs[name] = SAMPLES[name]
        else:
            args.append(SAMPLES[name])
    return cls(*args, **kwargs)


def convoy_errors() -> list[type[BaseException]]:
    import convoy.chaos
    import convoy.cost
    import convoy.resilience  # their error classes register on import

    found = subclasses(convoy.ConvoyError) + subclasses(convoy.SessionTerminated)
    return sorted({c for c in found if c.__module__.startswith(("convoy", __name__))},
                  key=lambda c: (c.__module__, c.__qualname__))


def test_the_walk_finds_errors_outside_the_errors_module() -> None:
    names = {c.__qualname__ for c in convoy_errors()}
    assert {"ChaosAborted", "SessionFailed", "QuotaExceeded", "Overrun", "ModelError",
            "BudgetExhausted", "RecordedError"} <= names


@pytest.mark.parametrize("cls", convoy_errors(), ids=lambda c: c.__qualname__)
def test_every_convoy_error_round_trips_with_its_attributes(cls: type[BaseException]) -> None:
    exc = instance(cls)
    rec = json.loads(json.dumps(error_to_record(exc)))  # the journal keeps JSON
    for again in (error_from_record(rec), pickle.loads(pickle.dumps(exc))):
        assert type(again) is cls
        assert str(again) == str(exc) and again.args == exc.args
        assert vars(again) == vars(exc)
        assert getattr(again, "reason", None) == getattr(exc, "reason", None)
        assert getattr(again, "retryable", None) == getattr(exc, "retryable", None)


def test_records_written_before_attrs_were_kept_still_read() -> None:
    e = error_from_record({"type": "ModelError", "message": "429", "retryable": True,
                           "status_code": 429, "retry_after": 2.5})
    assert type(e) is convoy.ModelError and e.retry_after == 2.5 and e.retryable
    e = error_from_record({"type": "BudgetExhausted", "message": "x",
                           "reason": "budget_exhausted"})
    assert type(e) is convoy.BudgetExhausted
    e = error_from_record({"type": "NonDeterminismError", "message": "x", "key": "1/2"})
    assert type(e) is convoy.NonDeterminismError and e.key == "1/2"


# -- other exceptions -------------------------------------------------------------------

@pytest.mark.parametrize("exc", [
    RuntimeError("boom"), ConnectionRefusedError(111, "Connection refused"),
    TimeoutError(), KeyError("k"), QuotaError("over", 3),
], ids=repr)
def test_importable_exceptions_come_back_with_their_type(exc: Exception) -> None:
    rec = json.loads(json.dumps(error_to_record(exc)))
    assert rec["type"] == type(exc).__name__ and rec["message"] == str(exc)
    again = error_from_record(rec)
    assert type(again) is type(exc) and again.args == exc.args and str(again) == str(exc)


def test_other_exceptions_come_back_as_recorded_errors_with_their_type_name() -> None:
    class Local(Exception):  # not importable by module and qualname
        pass

    for exc in (Local("gone"), Unbuildable(1, 2)):
        again = error_from_record(json.loads(json.dumps(error_to_record(exc))))
        assert type(again) is convoy.RecordedError and str(again) == str(exc)
        assert again.original_type == type(exc).__name__
        rec = error_to_record(again)  # and it keeps that name in the journal
        assert rec["type"] == type(exc).__name__
        back = error_from_record(rec)
        assert isinstance(back, convoy.RecordedError)
        assert back.original_type == type(exc).__name__
    gone = {"type": "ToolError", "message": "m", "module": "nolib.errors",
            "qualname": "ToolError", "args": ["m"]}  # not Convoy's ToolError
    assert type(error_from_record(gone)) is convoy.RecordedError
