"""``convoy audit verify --tenant T --checkpoint FILE`` where FILE holds no checkpoint of
``T`` (the file published for another tenant, a new user's trial, s63): the published
checkpoints were left out without a word, and, as some were given, so was the note that
the stored checkpoints were checked only against the keys they name: the log "verified"
against nothing its operator published. Now one ``note:`` line says none of them was
checked, and the unpinned note stays. And a file saved with a byte order mark is read."""

from __future__ import annotations

import asyncio
from pathlib import Path

from convoy.audit import AuditEvent, AuditLog
from convoy.stores import store_from_url
from tests.clikit import cli, workdir  # noqa: F401  (autouse fixture)


def _log(db: Path, tenant: str) -> None:
    async def build() -> None:
        store = store_from_url(db)
        await store.open()
        try:
            await AuditLog(store).append(tenant, [
                AuditEvent(kind="tool_call", status="ok", at=1000.0 + i, session_id="s1",
                           step_key=f"0/{i}", actor="clerk", target="tool") for i in range(3)])
        finally:
            await store.aclose()

    asyncio.run(build())


def test_checkpoints_of_another_tenant_are_said_to_be_unchecked(tmp_path: Path) -> None:
    _log(tmp_path / "a.db", "default")
    _log(tmp_path / "a.db", "acme")
    for tenant in ("default", "acme"):
        signed = cli("audit", "checkpoint", "--key", "audit.key", "--db", "a.db",
                     "--tenant", tenant)
        assert signed.code == 0, signed.stderr
        (tmp_path / f"{tenant}.jsonl").write_text(signed.stdout)
    wrong = cli("audit", "verify", "--db", "a.db", "--tenant", "default",
                "--checkpoint", "acme.jsonl")
    assert wrong.code == 0, wrong.stderr
    assert "note: --checkpoint: no published checkpoint is of tenant 'default' (the 1 " \
        "given is of tenant 'acme'), so none was checked" in wrong.stderr, wrong.stderr
    assert "note: the signer was not pinned" in wrong.stderr, wrong.stderr
    # the file of the tenant verified: its checkpoints anchor the log, no note
    right = cli("audit", "verify", "--db", "a.db", "--tenant", "default",
                "--checkpoint", "default.jsonl")
    assert right.code == 0 and right.stderr == "", right.stderr
    # every tenant's, with both files and with one: each checkpoint is some tenant's
    (tmp_path / "both.jsonl").write_text((tmp_path / "default.jsonl").read_text()
                                         + (tmp_path / "acme.jsonl").read_text())
    both = cli("audit", "verify", "--db", "a.db", "--tenant", "acme",
               "--checkpoint", "both.jsonl")
    assert both.code == 0 and both.stderr == "", both.stderr
    every = cli("audit", "verify", "--db", "a.db", "--checkpoint", "acme.jsonl")
    assert every.code == 0 and "--checkpoint" not in every.stderr, every.stderr


def test_published_checkpoints_and_a_proof_saved_with_a_bom(tmp_path: Path) -> None:
    """A file a Windows tool saved (Notepad, PowerShell's ``-Encoding utf8``) begins with
    a byte order mark: it was refused as 'Unexpected UTF-8 BOM (decode using
    utf-8-sig)', a Python error, though the checkpoints and the proof in it are whole."""
    _log(tmp_path / "a.db", "default")
    signed = cli("audit", "checkpoint", "--key", "audit.key", "--db", "a.db")
    assert signed.code == 0, signed.stderr
    (tmp_path / "published.jsonl").write_text("\ufeff" + signed.stdout, encoding="utf-8")
    verified = cli("audit", "verify", "--db", "a.db", "--checkpoint", "published.jsonl")
    assert verified.code == 0 and verified.stderr == "", verified.stderr
    proved = cli("audit", "prove", "1", "--db", "a.db")
    assert proved.code == 0, proved.stderr
    (tmp_path / "proof.json").write_text("\ufeff" + proved.stdout, encoding="utf-8")
    checked = cli("audit", "check", "proof.json")
    assert checked.code == 0, checked.stderr
    assert "entry 1 of tenant 'default' is in the signed log" in checked.stdout
