"""Errors round-trip through the journal (records) and through pickle, with their
attributes; session signals are not swallowed by ``except Exception``."""

from __future__ import annotations

import pickle

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


def test_unknown_exceptions_keep_their_type_name() -> None:
    rec = error_to_record(RuntimeError("boom"))
    assert rec == {"type": "RuntimeError", "message": "boom", "retryable": False}
    assert isinstance(error_from_record(rec), convoy.StepError)
