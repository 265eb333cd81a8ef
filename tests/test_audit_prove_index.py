"""``AuditLog.prove`` given an index that is no entry's (negative, not an integer), and
``prove_consistency`` a size that is no integer: a :class:`convoy.UserError` saying so,
before anything is signed. A negative index was reported as tampering (``audit entry -1
is missing (deleted, or the entries after it renumbered) ... run 'convoy audit
verify'``) after signing a checkpoint; text was Python's ``TypeError``. (``convoy audit
prove`` and ``consistency`` refuse both as usage errors.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.audit import AuditEvent, AuditLog
from convoy.stores import SQLiteStore

from .conftest import FakeClock


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[AuditLog]:
    store = SQLiteStore(tmp_path / "c.db", clock=FakeClock())
    await store.open()
    log = AuditLog(store, key_path=tmp_path / "audit.key")
    await log.append("acme", [AuditEvent(kind="tool_call", status="ok", at=1000.0 + i,
                                         session_id="s1", step_key=f"0/{i}", actor="clerk",
                                         target="tool") for i in range(3)])
    try:
        yield log
    finally:
        await store.aclose()


@pytest.mark.parametrize("index", [-1, "1", 1.0, True, None])
async def test_an_index_that_is_no_entrys_is_a_user_error_and_signs_nothing(
        log: AuditLog, index: Any) -> None:
    with pytest.raises(convoy.UserError, match="an audit entry's index") as e:
        await log.prove("acme", index)
    assert not isinstance(e.value, convoy.AuditError), e.value
    assert "verify" not in str(e.value)
    assert await log.checkpoints("acme") == []  # (nothing signed on the way)
    proof = await log.prove("acme", 1)  # (a good index still proves)
    assert proof["index"] == 1


@pytest.mark.parametrize("size", ["3", 3.0, True])
async def test_a_consistency_proof_from_a_size_that_is_no_integer_says_so(
        log: AuditLog, size: Any) -> None:
    """``prove_consistency("acme", "3")`` said ``no checkpoint of size 3 ... (kept sizes:
    3, 4)``: a contradiction, for a size given as text."""
    await log.checkpoint("acme")
    await log.append("acme", [AuditEvent(kind="tool_call", status="ok", at=2000.0,
                                         session_id="s1", step_key="0/9")])
    await log.checkpoint("acme")
    with pytest.raises(convoy.UserError, match="a checkpoint's size is an integer"):
        await log.prove_consistency("acme", size)
    assert (await log.prove_consistency("acme", 3))["size1"] == 3


class _Index:
    """An integer type of another library's (numpy's ``int64``): it has ``__index__``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __index__(self) -> int:
        return self.n


async def test_an_integer_of_another_type_is_an_index(log: AuditLog) -> None:
    """Any integer type (``__index__``: numpy's) proves and names a size, as ``int`` does."""
    assert (await log.prove("acme", _Index(1)))["index"] == 1  # type: ignore[arg-type]
    await log.append("acme", [AuditEvent(kind="tool_call", status="ok", at=2000.0,
                                         session_id="s1", step_key="0/9")])
    await log.checkpoint("acme")
    assert (await log.prove_consistency("acme", _Index(3)))["size1"] == 3  # type: ignore[arg-type]
