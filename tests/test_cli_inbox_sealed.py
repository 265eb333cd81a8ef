"""``convoy inbox list`` with tasks sealed for good (they hold the data of an erased data
subject) says how to end the sessions that wait for them: one ``convoy cancel ID`` each,
as ``convoy cancel`` takes one session id, every one of which runs as shown."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path

import pytest

import convoy

from .clikit import cli, workdir  # noqa: F401 - workdir: a fixture
from .test_privacy import KEY, SHARED_NAME, engine, note_subject


@convoy.workflow(name="inbox_sealed.ask_about")
async def ask_about(ctx: convoy.Context, key: str) -> str:
    got = await ctx.state("crm").get(key)
    answer = await ctx.ask_human(f"Call {got.value['name']}?", str, queue="calls")
    return answer.value


def _sealed(path: Path, sids: list[str]) -> None:
    """Sessions ``sids`` asked a person about Zed, who was then erased."""
    async def run() -> None:
        async with engine(path) as eng:
            assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
            for sid in sids:
                asked = await eng.run(ask_about, "c-9", session_id=sid)
                assert asked.status == "waiting"
            await eng.erase("zed")

    asyncio.run(run())


def _cancels(line: str) -> list[list[str]]:
    """The commands the line quotes (``'convoy cancel ...'``), as a shell splits them."""
    return [shlex.split(c) for c in re.findall(r"'(convoy cancel [^']*)'", line)]


@pytest.mark.parametrize("sids", [["s-1"], ["s-1", "s-2", "-s3"]], ids=["one", "three"])
def test_each_sealed_tasks_session_gets_a_cancel_that_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sids: list[str]) -> None:
    path = tmp_path / "x.db"
    _sealed(path, sids)
    monkeypatch.setenv("CONVOY_MASTER_KEY", KEY)
    listed = cli("inbox", "list", "--db", str(path), "--tenant", "default")
    assert listed.code == 0, listed
    [line] = [ln for ln in listed.stdout.splitlines() if " sealed for good" in ln]
    cancels = _cancels(line)
    store = ["--db", str(path)]
    expected = [["convoy", "cancel", *store, "--", sid] if sid.startswith("-") else
                ["convoy", "cancel", sid, *store] for sid in sorted(sids)]
    assert cancels == expected, line
    for argv in cancels:
        res = cli(*argv[1:])
        assert res.code == 0 and "cancelled session" in res.stdout, (argv, res)
    after = cli("inbox", "list", "--db", str(path))
    assert after.code == 0 and " sealed for good" not in after.stdout, after
