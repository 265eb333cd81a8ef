"""A file the command line reads or writes, named with a leading ``~`` that no shell
expanded (``--checkpoint=~/published.jsonl``, a cron line, a unit file): the home
directory, as ``--db`` and ``--key`` read it. ``audit verify --checkpoint``, ``audit
check PROOF`` and ``export -o`` said ``No such file or directory`` of the very file
``--db '~/...'`` and ``--key '~/...'`` beside them found (a new user's trial, s63)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from convoy.audit import AuditEvent, AuditLog
from convoy.stores import store_from_url
from tests.clikit import FLOW, GOOD, cli, workdir, write_jsonl  # noqa: F401  (autouse fixture)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$HOME``: a directory of its own, not the current one."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def _log(db: Path) -> None:
    async def build() -> None:
        store = store_from_url(db)
        await store.open()
        try:
            await AuditLog(store).append("default", [
                AuditEvent(kind="tool_call", status="ok", at=1000.0 + i, session_id="s1",
                           step_key=f"0/{i}", actor="clerk", target="tool") for i in range(3)])
        finally:
            await store.aclose()

    asyncio.run(build())


def test_published_checkpoints_and_a_proof_under_a_home_no_shell_expanded(
        home: Path) -> None:
    _log(home / "s.db")
    signed = cli("audit", "checkpoint", "--key", "~/audit.key", "--db", "~/s.db")
    assert signed.code == 0, signed.stderr
    (home / "published.jsonl").write_text(signed.stdout)
    verified = cli("audit", "verify", "--db", "~/s.db", "--key", "~/audit.key",
                   "--checkpoint", "~/published.jsonl")
    assert verified.code == 0, verified.stderr
    assert "1 signed checkpoint matched" in verified.stdout, verified.stdout
    proved = cli("audit", "prove", "1", "--key", "~/audit.key", "--db", "~/s.db")
    assert proved.code == 0, proved.stderr
    (home / "proof.json").write_text(proved.stdout)
    checked = cli("audit", "check", "~/proof.json",
                  "--public-key", json.loads(signed.stdout)["public_key"])
    assert checked.code == 0, checked.stderr
    assert "entry 1 of tenant 'default' is in the signed log" in checked.stdout


def test_an_export_to_a_home_no_shell_expanded(tmp_path: Path, home: Path) -> None:
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    write_jsonl(tmp_path / "in.jsonl", GOOD[:1])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env).code == 0
    res = cli("export", "c-9", "-o", "~/c-9.json", env=env)
    assert res.code == 0, res.stderr
    assert f"to {str(home / 'c-9.json')!r}" in res.stdout, res.stdout
    assert json.loads((home / "c-9.json").read_text())["subject"] == "c-9"
    assert not (tmp_path / "~").exists()
    # a directory missing under the home is named as the home's, as the shell would
    missing = cli("export", "c-9", "-o", "~/exports/c-9.json", env=env)
    assert missing.code == 2 and f"the directory {str(home / 'exports')!r} does not " \
        "exist" in missing.stderr, missing.stderr
