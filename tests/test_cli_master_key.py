"""``convoy resume``, ``worker``, ``replay`` and ``retry`` on a host without the master key
(an operator's first shell after an incident): a data subject's session, whose input and
journal are sealed, is left as it is, said in one line, and the other sessions run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import convoy
from convoy.privacy import MasterKey

from .clikit import GOOD, cli, one_line_error, sessions, workdir

__all__ = ["workdir"]  # the autouse fixture: each test in its own directory


def _pending(tmp_path: Path) -> dict[str, str]:
    """Sessions ``sub-1`` (of subject ``ada``) and ``plain-1``, created and left pending
    (an engine drained before they ran); the environment that holds the master key."""
    import cli_flows

    text = MasterKey.generate()
    (tmp_path / "m.key").write_text(text + "\n")

    async def make() -> None:
        async with convoy.Engine("convoy.db", master_key=MasterKey.from_text(text)) as e:
            e.drain()
            await e.run_many(cli_flows.handle, [GOOD[0]], ids=["sub-1"], subject="ada")
            await e.run_many(cli_flows.handle, [GOOD[1]], ids=["plain-1"])

    asyncio.run(make())
    return {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}


def _status(tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    return {r.id: (r.status, r.owner) for r in sessions(tmp_path / "convoy.db")}


def test_resume_without_the_master_key_runs_the_others_and_says_which_it_left(
        tmp_path: Path) -> None:
    keyed = _pending(tmp_path)
    assert _status(tmp_path) == {"sub-1": ("pending", None), "plain-1": ("pending", None)}
    res = cli("resume")
    assert res.code == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    [line] = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert "cannot resume 1 session(s) of data subjects" in line
    assert "$CONVOY_MASTER_KEY_FILE" in line
    assert _status(tmp_path) == {"sub-1": ("pending", None), "plain-1": ("completed", None)}
    res = cli("resume", env=keyed)
    assert res.code == 0, res.stderr
    assert _status(tmp_path)["sub-1"] == ("completed", None)


def test_a_worker_without_the_master_key_stops_saying_why(tmp_path: Path) -> None:
    _pending(tmp_path)
    res = cli("worker", "cli_flows", "--until-idle")
    assert res.code == 2, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    [line] = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert "cannot run session 'sub-1' (tenant 'default'): it is a data subject's" in line
    assert "$CONVOY_MASTER_KEY_FILE" in line
    assert _status(tmp_path)["sub-1"] == ("pending", None)


def test_replay_and_retry_without_the_master_key_say_it_is_needed(tmp_path: Path) -> None:
    import cli_flows

    keyed = _pending(tmp_path)
    assert cli("resume", env=keyed).code == 0

    key = MasterKey.from_text(Path(keyed["CONVOY_MASTER_KEY_FILE"]).read_text().strip())

    async def failed() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as e:
            res = await e.run(cli_flows.boom, "it broke", session_id="boom-1", subject="ada")
            assert res.status == "failed"

    asyncio.run(failed())
    for args, said in ((("replay", "sub-1"), "cannot replay session 'sub-1'"),
                       (("retry", "boom-1"), "cannot retry session 'boom-1'")):
        res = cli(*args)
        one_line_error(res, 2, said)
        assert "$CONVOY_MASTER_KEY_FILE" in res.stderr
