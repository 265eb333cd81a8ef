"""A key path that begins with ``~NAME`` of no user (``~convoy/master.key``, a ``/``
forgotten) is a name, as a shell leaves it and as ``--db`` reads it: ``keygen``,
``$CONVOY_MASTER_KEY_FILE`` and the audit commands' ``--key`` showed Python's
``RuntimeError: Could not determine home directory.`` as a traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from convoy.audit import AuditEvent, AuditLog
from convoy.stores import store_from_url
from tests.clikit import cli, run_ok, workdir  # noqa: F401  (autouse fixture)

#: A ``~NAME`` no user on any test machine has.
_NOBODY = "~no-such-user-for-convoy"


def test_keygen_and_the_master_key_file_read_a_home_of_no_user_as_a_name() -> None:
    key = f"{_NOBODY}/master.key"
    res = cli("keygen", key)
    assert res.code == 0, res.stderr
    assert Path(key).is_file()  # (in the current directory, as a shell leaves it)
    run_ok()
    erased = cli("erase", "nobody", env={"CONVOY_MASTER_KEY_FILE": key})
    assert erased.code == 2 and "unknown subject 'nobody'" in erased.stderr, erased


def test_an_audit_key_in_a_home_of_no_user_is_a_name(tmp_path: Path) -> None:
    async def build() -> None:
        db = store_from_url(tmp_path / "s.db")
        await db.open()
        try:
            await AuditLog(db).append("default", [
                AuditEvent(kind="tool_call", status="ok", at=1000.0 + i, session_id="s1",
                           step_key=f"0/{i}", actor="clerk", target="tool") for i in range(3)])
        finally:
            await db.aclose()

    asyncio.run(build())
    key = f"{_NOBODY}/audit.key"
    signed = cli("audit", "checkpoint", "--key", key, "--db", "s.db")
    assert signed.code == 0, signed.stderr
    assert Path(key).is_file()
    verified = cli("audit", "verify", "--key", key, "--db", "s.db")
    assert verified.code == 0 and "1 signed checkpoint matched" in verified.stdout, verified
    proved = cli("audit", "prove", "1", "--key", key, "--db", "s.db")
    assert proved.code == 0, proved.stderr
