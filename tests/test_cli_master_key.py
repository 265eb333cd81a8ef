"""``convoy resume``, ``worker``, ``replay`` and ``retry`` on a host without the master key
(an operator's first shell after an incident): a data subject's session, whose input and
journal are sealed, is left as it is, said in one line, and the other sessions run."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

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
    assert "cannot resume 1 session of data subjects" in line
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
                       (("retry", "boom-1"),
                        "cannot retry 1 session of data subjects ('boom-1')")):
        res = cli(*args)
        one_line_error(res, 2, said)
        assert "$CONVOY_MASTER_KEY_FILE" in res.stderr


def test_retry_with_the_master_key_selects_and_shows_a_subjects_error(
        tmp_path: Path) -> None:
    """A data subject's error is sealed in the store: with the master key, --error-type
    matches it and the dry run shows its type (it was skipped, and shown '(sealed)')."""
    import cli_flows

    keyed = _pending(tmp_path)
    key = MasterKey.from_text(Path(keyed["CONVOY_MASTER_KEY_FILE"]).read_text().strip())

    async def failed() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as e:
            res = await e.run(cli_flows.boom, "ada@example.com", session_id="boom-1",
                              subject="ada")
            assert res.status == "failed"

    asyncio.run(failed())
    res = cli("retry", "--error-type", "RuntimeError", "--dry-run", env=keyed)
    assert res.code == 0, res.stdout + res.stderr
    assert "boom-1" in res.stdout and "RuntimeError" in res.stdout, res.stdout
    assert "(sealed)" not in res.stdout and "ada@example.com" not in res.stdout
    assert "1 session would be retried" in res.stdout
    res = cli("retry", "boom-1", "--dry-run", env=keyed)
    assert res.code == 0 and "RuntimeError" in res.stdout and "(sealed)" not in res.stdout
    # a listing opens no subject's value, with the key or without (a batch job's log:
    # `sessions show ID` opens it with the key), and lists with another key set too
    (tmp_path / "other.key").write_text(MasterKey.generate() + "\n")
    table = cli("sessions", "list", env={"CONVOY_MASTER_KEY_FILE": str(tmp_path / "other.key")})
    assert table.code == 0 and "boom-1" in table.stdout, table
    res = cli("retry", "--error-type", "RuntimeError", env=keyed)
    assert res.code == 0, res.stdout + res.stderr
    assert {r.id: r.status for r in sessions(tmp_path / "convoy.db")}["boom-1.r1"] == "failed"


def test_retry_without_the_master_key_says_whose_errors_it_could_not_match(
        tmp_path: Path) -> None:
    import cli_flows

    keyed = _pending(tmp_path)
    key = MasterKey.from_text(Path(keyed["CONVOY_MASTER_KEY_FILE"]).read_text().strip())

    async def failed() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as e:
            await e.run(cli_flows.boom, "x", session_id="boom-1", subject="ada")
            await e.run(cli_flows.boom, "y", session_id="boom-2")

    asyncio.run(failed())
    res = cli("retry", "--error-type", "RuntimeError", "--dry-run")
    assert res.code == 0, res.stdout + res.stderr
    assert "boom-2" in res.stdout and "boom-1" not in res.stdout
    [note] = [ln for ln in res.stderr.splitlines() if ln.startswith("note:")]
    assert note == "note: 1 session of data subjects not matched against --error-type: its " \
        "error is sealed (set $CONVOY_MASTER_KEY_FILE to the master key to read it)", note
    # Selected without --error-type, it cannot be retried without the key: the dry run
    # says so as the retry would, and the retry runs none (not half of them).
    for dry in (["--dry-run"], []):
        res = cli("retry", "--status", "failed", *dry)
        one_line_error(res, 2, "cannot retry 1 session of data subjects ('boom-1'): its input "
                               "is sealed; set $CONVOY_MASTER_KEY_FILE to the store's master "
                               "key file, or select without them; nothing "
                               + ("would be" if dry else "was") + " retried")
    assert {r.id for r in sessions(tmp_path / "convoy.db")} == {"sub-1", "plain-1", "boom-1",
                                                                 "boom-2"}
    res = cli("retry", "boom-2", "--dry-run", "--all-tenants")
    assert res.code == 0 and "tenant" in res.stdout and "default" in res.stdout, res.stdout
    # `sessions show` suggests the retry as it would run: with the key, for a subject's
    # (review of stop 44: the retry it suggested was then refused)
    shown = cli("sessions", "show", "boom-1").stdout
    assert "run it again as a new session with $CONVOY_MASTER_KEY_FILE set (its input is " \
        "sealed): convoy retry boom-1" in " ".join(shown.split()), shown
    assert "run it again as a new session: convoy retry boom-2" in \
        " ".join(cli("sessions", "show", "boom-2").stdout.split())


def test_a_signal_to_a_data_subjects_session_without_the_master_key_is_refused(
        tmp_path: Path) -> None:
    """Its payload would be stored in the clear (a signal is sealed under the session's
    keys as it is stored): refused in one line, nothing written; with the key it is sent,
    sealed. A session of no subject takes it as before."""
    keyed = _pending(tmp_path)
    marker = "ZQXMARKER7731"
    for how in (["--payload", f'"{marker}"'], ["--payload-file", "p.json"]):
        Path("p.json").write_text(f'"{marker}"')
        res = cli("signal", "sub-1", "poke", *how)
        one_line_error(res, 2, "session 'sub-1' holds a data subject's data")
        assert "$CONVOY_MASTER_KEY_FILE" in res.stderr, res.stderr
    Path("p.json").unlink()
    assert not any(marker.encode() in p.read_bytes() for p in tmp_path.glob("convoy.db*"))
    assert cli("signal", "plain-1", "poke", "--payload", '"plain"').code == 0
    res = cli("signal", "sub-1", "poke", "--payload", f'"{marker}"', env=keyed)
    assert res.code == 0, res.stderr
    assert not any(marker.encode() in p.read_bytes() for p in tmp_path.glob("convoy.db*"))


def _reads_ada_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str,
                    key: MasterKey | None, session: str = "plain-1",
                    every: bool = False) -> list[str]:
    """``SQLiteStore.METHOD`` patched: once (or ``every`` time), after its read,
    ``session`` journals a record sealed under data subject ada's key (another engine runs
    it, and it reads ada's shared state), written by a second store. What landed (the
    records' keys)."""
    from convoy.privacy._keys import KeyRing
    from convoy.privacy._seal import seal, step_aad
    from convoy.stores import SQLiteStore, StepRecord

    read = getattr(SQLiteStore, method)
    landed: list[str] = []

    async def then_a_subjects_read(self: SQLiteStore, session_id: str, *a: object,
                                   **kw: object) -> object:
        found = await read(self, session_id, *a, **kw)
        if (every or not landed) and session_id == session:
            other = SQLiteStore(str(tmp_path / "convoy.db"))
            await other.open()
            try:
                step = f"read-ada-{len(landed)}"
                sealed = '{"$sealed": "k1", "v": 2, "d": "AAAA"}'
                if key is not None:
                    ada = await KeyRing(other, key).load("default", "ada", create=False)
                    assert ada is not None
                    sealed = seal(ada, step_aad("default", session, step), '"r"')
                await other.append(session, None, StepRecord(
                    key=step, kind="state", target="get crm/c1", status="completed",
                    result=sealed, at=1.0 + len(landed)))
                landed.append(step)
            finally:
                other.close()
        return found

    monkeypatch.setattr(SQLiteStore, method, then_a_subjects_read)
    return landed


def test_a_signal_to_a_session_that_read_a_subjects_data_after_the_check_is_not_sent_clear(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The keyless refusal reads the session's journal, then sends: a session that reads a
    data subject's data between the two (another engine runs it) must not get the payload
    in the clear. The send is checked against the sealed records the check saw."""
    _pending(tmp_path)
    landed = _reads_ada_once(tmp_path, monkeypatch, "journal", None)

    async def keyless() -> None:
        async with convoy.Engine("convoy.db") as e:
            with pytest.raises(convoy.UserError, match="holds a data subject's data"):
                await e.signal("plain-1", "poke", "ZQXCLEARSIG1")

    asyncio.run(keyless())
    assert landed == ["read-ada-0"]
    assert not any(b"ZQXCLEARSIG1" in p.read_bytes() for p in tmp_path.glob("convoy.db*"))


def test_a_signal_with_the_key_is_sealed_under_a_subject_read_after_its_keys_were_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the master key a signal is sealed under the keys of the subjects whose data the
    session read; a subject read between finding them and storing the signal is one more
    key, so the payload is sealed again under it, never stored in the clear."""
    from convoy.privacy._keys import KeyRing
    from convoy.privacy._seal import signal_aad
    from convoy.stores import SQLiteStore

    keyed = _pending(tmp_path)
    key = MasterKey.from_text(Path(keyed["CONVOY_MASTER_KEY_FILE"]).read_text().strip())
    landed = _reads_ada_once(tmp_path, monkeypatch, "load_journal", key)

    async def with_key() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as e:
            await e.signal("plain-1", "poke", "ZQXKEYSIG2")

    asyncio.run(with_key())
    assert landed == ["read-ada-0"]
    assert not any(b"ZQXKEYSIG2" in p.read_bytes() for p in tmp_path.glob("convoy.db*"))

    async def sealed_by() -> list[str]:
        store = SQLiteStore(str(tmp_path / "convoy.db"))
        await store.open()
        try:
            signal = await store.next_signal("plain-1", "poke")
            assert signal is not None
            layers, text = await KeyRing(store, key).peel(
                "default", signal_aad("default", "plain-1", "poke"), signal.payload)
            assert text == '"ZQXKEYSIG2"', text
            return [name for name, _ in layers]
        finally:
            store.close()

    assert asyncio.run(sealed_by()) == ["ada"]


def test_a_signal_with_the_key_reaches_a_subjects_session_that_journals_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data subject's own session, run by another engine, journals a record sealed under
    its subject's key at every step: a signal sent with the key meanwhile is sealed under
    that key, and sent (review of stop 45: a check that counted the sealed records refused
    it ten times, and a cancel too)."""
    keyed = _pending(tmp_path)
    key = MasterKey.from_text(Path(keyed["CONVOY_MASTER_KEY_FILE"]).read_text().strip())
    landed = _reads_ada_once(tmp_path, monkeypatch, "load_journal", key, session="sub-1",
                             every=True)

    async def with_key() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as e:
            await e.signal("sub-1", "poke", "ZQXKEYSIG4")
            await e.cancel("sub-1")

    asyncio.run(with_key())
    assert len(landed) >= 2
    assert not any(b"ZQXKEYSIG4" in p.read_bytes() for p in tmp_path.glob("convoy.db*"))


async def _damaged_record(tmp_path: Path, session: str, *, at: float) -> None:
    """A journal record of ``session`` that starts as a sealed value and is not one (the
    database edited), written by a store of its own."""
    from convoy.stores import SQLiteStore, StepRecord

    store = SQLiteStore(str(tmp_path / "convoy.db"))
    await store.open()
    try:
        await store.append(session, None, StepRecord(
            key="bad", kind="effect", target="x", status="completed",
            result='{"$sealed": oops', at=at))
    finally:
        store.close()


def test_a_damaged_sealed_record_stops_a_signal_with_the_key_in_one_line(
        tmp_path: Path) -> None:
    """A journal record that starts as a sealed value but is not one (the database edited
    or damaged): the keys of the session cannot be found, so the signal is not sent; one
    line, no traceback (review of stop 45: a JSONDecodeError's traceback)."""
    keyed = _pending(tmp_path)
    asyncio.run(_damaged_record(tmp_path, "plain-1", at=1.0))
    res = cli("signal", "plain-1", "poke", "--payload", '"ZQXDAMAGED5"', env=keyed)
    assert res.code != 0 and "Traceback" not in res.stdout + res.stderr, res
    [line] = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "sealed value" in line and "damaged" in line, line
    assert not any(b"ZQXDAMAGED5" in p.read_bytes() for p in tmp_path.glob("convoy.db*"))


def test_a_cancel_ends_a_session_whose_journal_does_not_read(tmp_path: Path) -> None:
    """A waiting session whose journal holds a value that does not open (the database
    edited): ``convoy cancel`` ends it, as asked (a session can always be stopped); its
    hooks see no journal. (Review of stop 45: it was left running, owned by the command's
    process, its wait lost; stop 45 gave it back waiting, and the cancel failed.)"""
    import cli_flows

    keyed = _pending(tmp_path)
    key = MasterKey.from_text(Path(keyed["CONVOY_MASTER_KEY_FILE"]).read_text().strip())

    async def waiting() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as e:
            res = await e.run(cli_flows.approval, "x", session_id="wait-1", subject="ada")
            assert res.status == "waiting"
        await _damaged_record(tmp_path, "wait-1", at=1e9)

    asyncio.run(waiting())
    before = {r.id: (r.status, r.owner, r.wait_name) for r in sessions(tmp_path / "convoy.db")}
    assert before["wait-1"] == ("waiting", None, "approve")
    res = cli("cancel", "wait-1", "--by", "op", env=keyed)
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res
    after = {r.id: (r.status, r.owner) for r in sessions(tmp_path / "convoy.db")}
    assert after["wait-1"] == ("cancelled", None), after


def test_signals_with_the_key_reach_a_subjects_session_another_process_runs(
        tmp_path: Path) -> None:
    """Two processes on one store: one runs a data subject's session that journals a
    sealed record at every step; this one sends it signals with the master key meanwhile.
    Each is sent (review of stop 45: a check that counted the sealed records refused them
    all), sealed under the subject's key; no payload is in the database files. The
    running process is killed at the end, mid-step."""
    import subprocess
    import sys
    import time

    from convoy.privacy._keys import KeyRing
    from convoy.privacy._seal import signal_aad
    from convoy.stores import SQLiteStore

    from .clikit import subprocess_env

    text = MasterKey.generate()
    (tmp_path / "m.key").write_text(text + "\n")
    key = MasterKey.from_text(text)
    script = ("import asyncio, convoy, busy_flows\n"
              "from convoy.privacy import MasterKey\n"
              "key = MasterKey.from_text(open('m.key').read().strip())\n"
              "async def main():\n"
              "    async with convoy.Engine('convoy.db', master_key=key,\n"
              "                             limits=convoy.Limits(max_steps=10**7)) as e:\n"
              "        await e.run(busy_flows.busy, 10**7, session_id='busy-1', subject='ada')\n"
              "asyncio.run(main())\n")
    log = (tmp_path / "runner.log").open("wb")
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path,
                              env=subprocess_env(), stdout=log, stderr=log)

    async def journaled() -> int:
        if not (tmp_path / "convoy.db").exists():
            return 0
        store = SQLiteStore(str(tmp_path / "convoy.db"), read_only=True)
        try:
            await store.open()
            return len(await store.journal("busy-1"))
        except convoy.ConvoyError:  # (not created yet)
            return 0
        finally:
            store.close()

    async def signals() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as e:
            for i in range(3):
                await e.signal("busy-1", "poke", f"ZQXBUSY{i}")

    try:
        deadline = time.monotonic() + 120
        while asyncio.run(journaled()) < 50:  # (observable state: it is running)
            assert runner.poll() is None, (tmp_path / "runner.log").read_text()
            assert time.monotonic() < deadline, "the session never journaled 50 steps"
            time.sleep(0.05)
        asyncio.run(signals())
        assert asyncio.run(journaled()) > 50 and runner.poll() is None  # (still running)
    finally:
        runner.kill()
        runner.wait()
        log.close()

    async def payloads() -> list[tuple[list[str], str | None]]:
        store = SQLiteStore(str(tmp_path / "convoy.db"))
        await store.open()
        try:
            ring, out = KeyRing(store, key), []
            rows = store._read("SELECT payload FROM signals WHERE session_id='busy-1' "
                               "ORDER BY seq", ())
            for (payload,) in rows:
                layers, opened = await ring.peel(
                    "default", signal_aad("default", "busy-1", "poke"), payload)
                out.append(([name for name, _ in layers], opened))
            return out
        finally:
            store.close()

    assert asyncio.run(payloads()) == [(["ada"], f'"ZQXBUSY{i}"') for i in range(3)]
    assert not any(b"ZQXBUSY" in p.read_bytes() for p in tmp_path.glob("convoy.db*"))


def test_a_signal_sealed_again_and_again_is_given_up_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that reads another subject's data every time its signal was sealed (here:
    keys that never see the sealed record the store counts) does not loop for ever: the
    send is given up, nothing stored."""
    from convoy.privacy._sealed_store import SealingStore
    from convoy.stores import SessionRow

    keyed = _pending(tmp_path)
    key = MasterKey.from_text(Path(keyed["CONVOY_MASTER_KEY_FILE"]).read_text().strip())
    _reads_ada_once(tmp_path, monkeypatch, "load_journal", key)
    named = SealingStore._seals_named
    calls: list[int] = []

    async def blind(self: SealingStore, row: SessionRow) -> object:
        keys, _ = await named(self, row)
        calls.append(1)
        return keys, set()

    monkeypatch.setattr(SealingStore, "_seals_named", blind)

    async def with_key() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as e:
            with pytest.raises(convoy.StoreError, match=re.escape(
                    "read the data of another data subject each time signal 'poke' was "
                    "sealed for it (10 times): nothing was sent; try again")):
                await e.signal("plain-1", "poke", "ZQXKEYSIG3")

    asyncio.run(with_key())
    assert len(calls) == 10
    assert not any(b"ZQXKEYSIG3" in p.read_bytes() for p in tmp_path.glob("convoy.db*"))


def test_state_set_on_a_subjects_key_seals_the_new_version_or_is_refused(
        tmp_path: Path) -> None:
    """A write from outside any session to a key whose current version is a data
    subject's is sealed under the same subject's key (privacy.md): with the master key
    the new version is sealed; without it the write is refused in one line, nothing
    written."""
    text = MasterKey.generate()
    (tmp_path / "m.key").write_text(text + "\n")
    keyed = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}

    @convoy.workflow(name="crm_note")
    async def note(ctx: convoy.Context, text: str) -> None:
        await ctx.state("crm").set("c1", {"note": text}, expected_version=0)

    async def make() -> None:
        async with convoy.Engine("convoy.db", master_key=MasterKey.from_text(text)) as e:
            assert (await e.run(note, "FIRSTMARK11", subject="ada")).ok

    asyncio.run(make())
    marker = "FIFTHMARK77"

    async def keyless() -> None:  # engine.state(...) without the master key: refused too
        async with convoy.Engine("convoy.db") as e:
            with pytest.raises(convoy.UserError, match="holds a data subject's data"):
                await e.state("crm").set("c1", {"note": marker}, expected_version=1)

    asyncio.run(keyless())
    res = cli("state", "set", "crm", "c1", f'{{"note": "{marker}"}}')
    one_line_error(res, 2, "a data subject's")
    assert "$CONVOY_MASTER_KEY_FILE" in res.stderr, res.stderr
    (tmp_path / "other.key").write_text(MasterKey.generate() + "\n")
    res = cli("state", "set", "crm", "c1", f'{{"note": "{marker}"}}',
              env={"CONVOY_MASTER_KEY_FILE": str(tmp_path / "other.key")})
    one_line_error(res, 2, "is not the one this store's data subjects are sealed with")
    res = cli("state", "set", "crm", "c1", f'{{"note": "{marker}"}}', env=keyed)
    assert res.code == 0, res.stderr
    assert "at version 2" in res.stdout, res.stdout
    assert not any(marker.encode() in p.read_bytes() for p in tmp_path.glob("convoy.db*"))
    got = cli("state", "get", "crm", "c1", env=keyed)
    assert got.code == 0 and marker in got.stdout, got
    # without the key: said to be sealed, and how to read it (not the sealed JSON)
    for args in (["get", "crm", "c1"], ["history", "crm", "c1"], ["list", "crm"]):
        shown = cli("state", *args)
        assert shown.code == 0 and "$sealed" not in shown.stdout, (args, shown)
        assert "sealed" in shown.stdout + shown.stderr and \
            "$CONVOY_MASTER_KEY_FILE" in shown.stdout + shown.stderr, (args, shown)


def test_a_subjects_version_written_after_the_keyless_check_is_not_written_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal of a keyless write reads the key's current version, then writes: a
    data subject's version that lands between the two (a session run by an engine with the
    master key) must not be written over in the clear. The write is made against the
    version that was checked, so it conflicts and writes nothing."""
    from convoy.stores import SQLiteStore, StateWrite
    from convoy.stores._protocol import SEALED_PREFIX
    from convoy.stores._sqlite_state import SQLiteState

    async def first() -> None:
        async with convoy.Engine("convoy.db") as e:
            await e.state("crm").set("c1", {"note": "plain"}, expected_version=0)

    asyncio.run(first())
    checked = SQLiteState.state_get
    landed: list[int] = []

    async def then_a_subjects_write(self: SQLiteState, tenant: str, namespace: str,
                                    key: str) -> object:
        entry = await checked(self, tenant, namespace, key)
        if not landed:  # (once: an engine with the master key writes a sealed version)
            other = SQLiteStore(str(tmp_path / "convoy.db"))
            await other.open()
            try:
                res = await other.state_put(StateWrite(
                    tenant=tenant, namespace=namespace, key=key,
                    value=SEALED_PREFIX + ': "k1", "v": 2, "d": "AAAA"}',
                    expected_version=entry.version))  # type: ignore[attr-defined]
                landed.append(res.entry.version if res.entry else 0)
            finally:
                other.close()
        return entry

    monkeypatch.setattr(SQLiteState, "state_get", then_a_subjects_write)

    async def keyless() -> None:
        async with convoy.Engine("convoy.db") as e:
            with pytest.raises(convoy.StateConflict):
                await e.state("crm").set("c1", {"note": "ZQXCLEAR1"}, expected_version=2)

    asyncio.run(keyless())
    assert landed == [2]

    async def plain_again() -> None:  # (a plain version 3, which the command checks)
        store = SQLiteStore(str(tmp_path / "convoy.db"))
        await store.open()
        try:
            await store.state_put(StateWrite(tenant="default", namespace="crm", key="c1",
                                             value='{"note": "plain"}', expected_version=2))
        finally:
            store.close()

    asyncio.run(plain_again())
    landed.clear()
    res = cli("state", "set", "crm", "c1", '{"note": "ZQXCLEAR2"}')
    one_line_error(res, 1, "state crm/c1 (tenant 'default') changed: the write expected "
                           "version 3 but it is at version 4; nothing was written")
    assert landed == [4]
    assert not any(m in p.read_bytes() for p in tmp_path.glob("convoy.db*")
                   for m in (b"ZQXCLEAR1", b"ZQXCLEAR2"))
