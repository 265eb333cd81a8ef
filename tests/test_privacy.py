"""Data subjects: personal data sealed under per-subject keys, erasure that leaves no byte
of it in any file the project wrote, export (right of access), retention by age, and one
clear line for each misuse."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy import MasterKey
from convoy._errors import JournalError, UserError
from convoy.cli._state import _writer
from convoy.privacy._seal import is_sealed
from convoy.stores import store_from_url

from .clikit import subprocess_env
from .conftest import STORE_KINDS, FakeClock, store_db

# Personal values planted in every place a session holds data: its input, a tool's
# output, the model's output and a shared-state write.
IN_NAME = "Ingrid Quellenberg-Saxby"
TOOL_IBAN = "DE89370400440532013000"
MODEL_PHONE = "+49 170 5550123 Quellenberg"
STATE_MAIL = "ingrid.q.saxby@example.org"
PLANTED = (IN_NAME, TOOL_IBAN, MODEL_PHONE, STATE_MAIL)
# The same kinds of values for a session without a subject: they must stay (the control
# that shows the scan finds what is there).
OTHER = ("Bertrand Olafsdottir-Mwangi", "FR7630006000011234567890189")


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


class Customer(BaseModel):
    name: str


class Reply(BaseModel):
    text: str


@convoy.tool
async def lookup(ctx: convoy.ToolContext, name: str) -> dict[str, str]:
    """The customer's bank account."""
    return {"name": name, "iban": TOOL_IBAN if name == IN_NAME else OTHER[1]}


def script(req: convoy.ModelRequest) -> Any:
    tools = [json.loads(m.content or "{}") for m in req.messages if m.role == "tool"]
    if not tools:
        name = IN_NAME if IN_NAME in (req.messages[-1].content or "") else OTHER[0]
        return {"tool_calls": [{"name": "lookup", "arguments": {"name": name}}]}
    return {"output": {"text": f"call {MODEL_PHONE} about {tools[-1]['iban']}"
                       if tools[-1]["name"] == IN_NAME else f"no phone for {OTHER[0]}"}}


clerk = convoy.Agent(name="clerk", input_type=Customer, output_type=Reply,
                     model=convoy.SimModel(script), tools=[lookup])


@convoy.workflow(name="privacy.serve")
async def serve(ctx: convoy.Context, c: Customer) -> str:
    reply = await ctx.run(clerk, c)
    # State keys are names, not data: they are not sealed (see docs/privacy.md).
    key = "subject" if c.name == IN_NAME else "control"
    await ctx.state("contacts").set(key, {"mail": STATE_MAIL if c.name == IN_NAME else
                                          "none"}, expected_version=0)
    return reply.text


def engine(db: str | Path, clock: FakeClock | None = None, **kw: Any) -> convoy.Engine:
    eng = convoy.Engine(db, master_key=MasterKey.from_text(KEY), **kw)
    if clock is not None:
        eng.store.clock = clock  # type: ignore[attr-defined]
    return eng


KEY = MasterKey.generate()
#: What refuses a master key that is not the store's.
TYPO = "is not the one this store's data subjects are sealed with"


def scan(paths: list[Path], values: tuple[str, ...]) -> dict[str, list[str]]:
    """Which values occur, byte for byte, in which of the files."""
    found: dict[str, list[str]] = {}
    for p in paths:
        if not p.exists():
            continue
        data = p.read_bytes()
        for v in values:
            if v.encode() in data:
                found.setdefault(v, []).append(p.name)
    return found


def files_of(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


async def test_erasure_leaves_no_byte_of_the_subject_in_any_file_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        res = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
        ctl = await eng.run(serve, {"name": OTHER[0]})
        assert res.ok and ctl.ok and MODEL_PHONE in res.output
        # Held and readable through the engine: the export has every planted value.
        doc = await eng.export("customer-42")
        exported = json.dumps(doc)
        assert all(v in exported for v in PLANTED)
        # Each step names the agent that took it (a model step's is its target).
        steps = doc["sessions"][0]["steps"]
        assert {(s["kind"], s["agent"]) for s in steps if s["kind"] in ("model", "tool")} \
            >= {("model", "clerk")}, steps
        # At rest: sealed (no plaintext in the files) while the key exists.
        raw = list(await eng.store.inner.journal(res.id))  # type: ignore[attr-defined]
        assert raw and all(is_sealed(r.result) for r in raw if r.result)
        # (a stretch of each one's ciphertext: its label names the key, and stays in the
        # erasure's record as the subject's fingerprint)
        sealed_bytes = [json.loads(r.result)["d"][10:50] for r in raw if r.result]
    files = files_of(tmp_path)
    assert scan(files, PLANTED) == {}
    assert scan(files, OTHER)  # the control: plaintext of a session without a subject
    assert any(scan(files, (s,)) for s in sealed_bytes)  # the ciphertext is there

    async with engine(db) as eng:
        event = await eng.erase("customer-42")
        assert event.sessions == 1 and event.key and event.state_versions == 1
        assert await eng.store.get_session(res.id) is None
        assert (await eng.state("contacts").get("control")).exists
        assert not (await eng.state("contacts").get("subject")).exists
    files = files_of(tmp_path)
    assert scan(files, PLANTED) == {}
    assert not any(scan(files, (s,)) for s in sealed_bytes)
    assert scan(files, ("customer-42",)) == {}
    assert set(scan(files, OTHER)) == set(OTHER)  # what is not the subject's stays
    assert {p.name for p in files} <= {"convoy.db", "convoy.db-wal", "convoy.db-shm"}


async def test_sessions_of_a_subject_are_sealed_at_rest_and_open_through_the_engine(
        db: str | Path) -> None:
    async with engine(db) as eng:
        res = await eng.tenant("acme").run(serve, {"name": IN_NAME}, subject="s-1")
        row = await eng.store.inner.get_session(res.id)  # type: ignore[attr-defined]
        assert row.subject == "s-1" and is_sealed(row.input) and is_sealed(row.output)
        entry = await eng.store.inner.state_get("acme", "contacts", "subject")  # type: ignore[attr-defined]
        assert is_sealed(entry.value)
        opened = await eng.store.get_session(res.id)
        assert opened is not None and IN_NAME in opened.input
        got = await eng.tenant("acme").state("contacts").get("subject")
        assert got.value == {"mail": STATE_MAIL}
        again = await eng.tenant("acme").run(serve, {"name": IN_NAME}, session_id=res.id)
        assert again.output == res.output


async def test_erasure_and_export_on_both_stores(db: str | Path) -> None:
    async with engine(db) as eng:
        acme = eng.tenant("acme")
        res = await acme.run(serve, {"name": IN_NAME}, subject="s-1")
        other = await eng.tenant("globex").run(serve, {"name": IN_NAME}, subject="s-1")
        doc = await acme.export("s-1")
        assert [s["id"] for s in doc["sessions"]] == [res.id]  # tenant-scoped
        assert doc["state"][0]["value"] == {"mail": STATE_MAIL}
        assert any(TOOL_IBAN in json.dumps(st["result"]) for st in doc["sessions"][0]["steps"])
        event = await acme.erase("s-1")
        assert event.sessions == 1 and event.subject_ref and "s-1" not in event.subject_ref
        assert [e.seq for e in await eng.store.erasures(tenant="acme")] == [event.seq]
        assert await eng.store.get_session(res.id) is None
        assert await eng.store.get_session(other.id) is not None  # globex's s-1 stays
        with pytest.raises(convoy.SubjectErased, match="erased already") as erased:
            await acme.erase("s-1")
        assert isinstance(erased.value, UserError)  # (what it was before it had a type)
        assert (erased.value.subject, erased.value.tenant, erased.value.seq,
                erased.value.at) == ("s-1", "acme", event.seq, event.at)
        assert [e.seq for e in await eng.store.erasures(tenant="acme")] == [event.seq]
        with pytest.raises(UserError, match="unknown subject 'nobody'"):
            await acme.export("nobody")


@convoy.workflow(name="privacy.versions")
async def versions(ctx: convoy.Context, name: str) -> str:
    crm = ctx.state("crm")
    await crm.set("c-1", {"name": name}, expected_version=0)
    await crm.set("c-1", '{"a JSON text": "kept as text"}', expected_version=1)
    await crm.get("c-1")
    await crm.history("c-1")
    return name


async def test_a_state_version_has_one_shape_wherever_the_export_holds_it(
        db: str | Path) -> None:
    """A state version in ``state`` and as the result of the state step that wrote or
    read it are one shape, its value the JSON value itself. A step's result was the
    journal's record (the value as JSON text, its writer as ``session_id`` and
    ``step_key``), so one export held a value in two shapes."""
    async with engine(db) as eng:
        res = await eng.run(versions, IN_NAME, subject="s-1")
        assert res.ok, res.error
        doc = await eng.export("s-1")
    assert doc["format"] == "convoy-subject-export/2"
    first, second = doc["state"]
    assert first["value"] == {"name": IN_NAME}
    assert second["value"] == '{"a JSON text": "kept as text"}'  # (a string, as written)
    assert set(first) == {"namespace", "key", "version", "value", "session", "agent",
                          "step", "at"}
    steps = {st["target"]: st["result"] for st in doc["sessions"][0]["steps"]}
    wrote = [st["result"] for st in doc["sessions"][0]["steps"]
             if st["target"] == "set crm/c-1"]
    assert wrote == [first, second]
    assert steps["get crm/c-1"] == second
    assert steps["history crm/c-1"] == [first, second]


async def test_retention_purges_finished_sessions_older_than_the_age(db: str | Path) -> None:
    clock = FakeClock()
    async with engine(db, clock) as eng:
        old = await eng.run(serve, {"name": IN_NAME}, subject="s-1")
        clock.advance(31 * 86400)
        new = await eng.run(serve, {"name": OTHER[0]})
        events = await eng.purge(30 * 86400)
        assert [(e.reason, e.sessions) for e in events] == [("retention", 1)]
        assert await eng.store.get_session(old.id) is None
        assert await eng.store.get_session(new.id) is not None
        assert await eng.purge(30 * 86400) == []


async def test_misuse_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVOY_MASTER_KEY", raising=False)
    monkeypatch.delenv("CONVOY_MASTER_KEY_FILE", raising=False)
    for text in (None, 42, b"bytes"):  # (an unset variable read as None: AttributeError)
        with pytest.raises(UserError, match="must be base64 text, not"):
            MasterKey.from_text(text)  # type: ignore[arg-type]
    async with convoy.Engine(tmp_path / "a.db") as eng:
        with pytest.raises(UserError, match="no master key is configured"):
            await eng.run(serve, {"name": IN_NAME}, subject="s-1")
        with pytest.raises(UserError, match="needs the master key"):
            await eng.erase("s-1")
    async with engine(tmp_path / "b.db") as eng:
        await eng.run(serve, {"name": IN_NAME}, subject="s-1")
    wrong = convoy.Engine(tmp_path / "b.db", master_key=MasterKey.from_text(
        MasterKey.generate()))
    async with wrong:
        with pytest.raises(UserError, match=TYPO):
            await wrong.export("s-1")
    with pytest.raises(UserError, match="not base64"):
        MasterKey.from_text("not a key!")
    # the key's text where a MasterKey belongs (MasterKey.generate() returns text): said
    # at once, not as an AttributeError at the first subject's session
    with pytest.raises(UserError, match=r"master_key must be a convoy.MasterKey "
                       r"\(MasterKey.from_text\(TEXT\) reads a key's text\), got a str$"):
        convoy.Engine(tmp_path / "c.db", master_key=MasterKey.generate())  # type: ignore
    monkeypatch.setenv("CONVOY_MASTER_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(UserError, match="cannot read the master key file"):
        MasterKey.from_env()
    # 32 raw bytes written where the base64 text belongs (not UTF-8 at all)
    raw = tmp_path / "raw.key"
    raw.write_bytes(b"\xff\xfe" + bytes(range(30)))
    monkeypatch.setenv("CONVOY_MASTER_KEY_FILE", str(raw))
    with pytest.raises(UserError, match=f"the master key file {str(raw)!r} is not a Convoy "
                       "master key: it holds binary data, not base64 text .make one with "
                       "'convoy keygen FILE'.$"):
        MasterKey.from_env()


def test_a_master_key_file_is_found_under_home_and_one_others_can_read_is_warned_of(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """``CONVOY_MASTER_KEY_FILE="~/.convoy/master.key"``, quoted as in a systemd unit or a
    .env file (no shell expands it), is the file in the home directory; a key file others
    can read is used, with a warning that says how to fix it."""
    monkeypatch.delenv("CONVOY_MASTER_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".convoy").mkdir()
    path = tmp_path / ".convoy" / "master.key"
    path.write_text(KEY)
    path.chmod(0o600)
    monkeypatch.setenv("CONVOY_MASTER_KEY_FILE", "~/.convoy/master.key")
    with caplog.at_level("WARNING", logger="convoy"):
        assert MasterKey.from_env() is not None
    assert not caplog.records
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="convoy"):
        assert MasterKey.from_env() is not None
    [warned] = caplog.records
    assert "readable by others (mode 0644): chmod 600" in warned.getMessage()
    # Once a process (a command reads the key more than once): not at each read.
    with caplog.at_level("WARNING", logger="convoy"):
        assert MasterKey.from_env() is not None
    assert len(caplog.records) == 1


async def test_erasure_on_postgres_leaves_no_byte_in_tables_or_data_files() -> None:
    """On PostgreSQL: every table of the store's schema is read back, and the files of the
    test cluster's data directory are scanned after a checkpoint. The server's WAL
    (``pg_wal``) is scanned for plaintext only: it keeps the sealed rows (and the wrapped
    key) until PostgreSQL recycles its segments, which the store cannot force."""
    import psycopg

    from convoy.observability import Tracing, observe
    from tests import pg_cluster

    schema = pg_cluster.fresh_schema()
    url = f"{pg_cluster.server_url()}?schema={schema}"
    try:
        # (live spans kept in the store: the store's values hold them, and the map of the
        # subject key's label to the subject's id: the review of 2026-12-03, G3)
        async with engine(url, interceptors=observe(Tracing(["store"], live=True))) as eng:
            res = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
            await eng.run(serve, {"name": OTHER[0]})
            raw = await eng.store.inner.journal(res.id)  # type: ignore[attr-defined]
            cipher = [json.loads(r.result)["d"][20:60] for r in raw if r.result]
        datadir = Path(pg_cluster._state["dir"])

        def dump() -> str:
            with psycopg.connect(pg_cluster.server_url(), autocommit=True) as conn:
                conn.execute("CHECKPOINT")
                tables = [r[0] for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname=%s", (schema,))]
                return json.dumps([conn.execute(  # type: ignore[call-overload]
                    f'SELECT * FROM "{schema}"."{t}"').fetchall() for t in tables],
                    default=str)

        def data_files() -> list[Path]:
            return [p for p in files_of(datadir) if "pg_wal" not in p.parts]

        before = dump()
        assert not any(v in before for v in PLANTED)  # sealed: never there in plaintext
        assert all(c in before for c in cipher) and OTHER[0] in before
        assert scan(data_files(), (OTHER[0],))  # the control: the scan sees the heap
        assert any(scan(data_files(), (c,)) for c in cipher)
        async with engine(url) as eng:
            await eng.erase("customer-42")
        after = dump()
        assert not any(v in after for v in (*PLANTED, *cipher, "customer-42"))
        assert OTHER[0] in after
        assert scan(data_files(), (*PLANTED, *cipher, "customer-42")) == {}
        assert scan(files_of(datadir), PLANTED) == {}  # pg_wal included: no plaintext
    finally:
        pg_cluster.drop_schema(schema)


class Refund(BaseModel):
    approve: bool
    note: str = ""


@convoy.workflow(name="privacy.refund")
async def ask_refund(ctx: convoy.Context, name: str) -> str:
    got = await ctx.ask_human(f"Refund {name}?", Refund, queue="billing")
    return got.value.note


async def test_a_persons_decision_on_a_subjects_task_is_sealed_and_erased(
        tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    note = "Spoke to Ingrid on +44 20 7946 0958"
    async with engine(db) as eng:
        acme = eng.tenant("acme")
        res = await acme.run(ask_refund, IN_NAME, subject="s-1", session_id="r1")
        assert res.status == "waiting"
        [task] = await acme.inbox.tasks()
        assert IN_NAME in task.prompt  # opened for the inbox
        await acme.inbox.answer(task.id, {"approve": True, "note": note}, by="alice")
        [res] = await acme.resume()
        assert res.ok and res.output == note
        assert scan(files_of(tmp_path), (IN_NAME, note)) == {}  # sealed at rest
        # The export has the task as asked and as answered (the answer written by the
        # person, not the session), opened.
        versions = [v for v in (await acme.export("s-1"))["state"] if v["key"] == task.id]
        assert [v["version"] for v in versions] == [1, 2], versions
        assert "alice" in json.dumps(versions[1]["value"]) and note in json.dumps(versions[1])
        await acme.erase("s-1")
        assert await acme.inbox.tasks(status="answered") == []  # the subject's task is gone
    assert scan(files_of(tmp_path), (IN_NAME, note)) == {}


@convoy.workflow(name="privacy.wait")
async def wait_a_day(ctx: convoy.Context, name: str) -> str:
    await ctx.sleep(86400)
    return name


async def test_a_subjects_session_cancelled_from_another_process_stays_sealed(
        tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        res = await eng.run(wait_a_day, IN_NAME, subject="s-1")
        assert res.status == "waiting"
    async with engine(db) as other:  # another process: it never ran the session
        await other.cancel(res.id)
        row = await other.store.inner.get_session(res.id)  # type: ignore[attr-defined]
        assert row.status == "cancelled" and is_sealed(row.error)
        opened = await other.store.get_session(res.id)
        by = f"engine {other.owner}"
        assert opened is not None and opened.error_record == {
            "type": "Cancelled", "message": f"cancelled by {by}", "by": by}


@pytest.mark.parametrize("audited", [False, True], ids=["plain", "audited"])
async def test_a_damaged_subject_key_escalates_its_sessions_and_the_worker_runs_the_others(
        tmp_path: Path, audited: bool) -> None:
    """A subject's wrapped key edited in the store is that subject's damage, not the
    worker's: its due session is escalated as unreadable (as any sealed value that does not
    open), and the worker serves the other sessions and returns, audited or not (the
    audit's hook asks for the key too). (It stopped the worker, with a misuse error, for
    every tenant.)"""
    import sqlite3

    from convoy.audit import AuditInterceptor

    db = tmp_path / "convoy.db"
    clock = FakeClock()

    def clocked() -> convoy.Engine:
        return convoy.Engine(store_from_url(db, clock=clock), workflows=[wait_a_day, serve],
                             master_key=MasterKey.from_text(KEY),
                             interceptors=[AuditInterceptor()] if audited else [])

    async with clocked() as eng:
        held = await eng.run(wait_a_day, IN_NAME, subject="s-1")
        assert held.status == "waiting"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE subject_keys SET wrapped='QUJD'")
    conn.close()
    clock.advance(86401)
    async with clocked() as eng:
        other = await eng.run(serve, {"name": OTHER[0]})
        assert other.status == "completed"
        await eng.serve(until_idle=True, poll_interval=0.01)
        row = await eng.store.inner.get_session(held.id)  # type: ignore[attr-defined]
        assert row.status == "escalated", row.status


async def test_erasure_is_an_audit_entry_and_the_log_still_verifies(tmp_path: Path) -> None:
    from convoy.audit import AuditEvent, AuditInterceptor
    from convoy.audit._verify import verify_log

    db = tmp_path / "convoy.db"
    audit = AuditInterceptor(key_path=tmp_path / "audit.key")
    async with engine(db, interceptors=[audit]) as eng:
        await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
        before = await verify_log(audit.log, "default")
        await audit.log.checkpoint("default")
        event = await eng.erase("customer-42")
        after = await verify_log(audit.log, "default")
        assert after.size == before.size + 1 and after.checkpoints == 1
        last = await eng.store.audit_entry("default", after.size - 1)
        assert last is not None
        entry = AuditEvent.decode(last.body)
        assert entry.kind == "erasure" and entry.refs["subject_ref"] == event.subject_ref
        assert entry.refs["sessions"] == "1"
    assert scan(files_of(tmp_path), (*PLANTED, "customer-42")) == {}


async def test_erasure_deletes_the_subjects_spans_from_the_embedded_trace_store(
        tmp_path: Path) -> None:
    from convoy.observability._tracing import SPANS_NAMESPACE, Tracing

    db = tmp_path / "convoy.db"
    async with engine(db, interceptors=[Tracing(live=True)]) as eng:
        res = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
    async with engine(db) as eng:
        assert await eng.store.kv_all(SPANS_NAMESPACE + res.id)  # spans were stored
        await eng.erase("customer-42")
        assert await eng.store.kv_all(SPANS_NAMESPACE + res.id) == {}
    assert scan(files_of(tmp_path), (*PLANTED, res.id)) == {}


async def test_an_erasure_whose_purge_fails_leaves_the_spans_and_audit_cursors(
        db: str | Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What interceptors keep per session (the embedded store's spans, the audit cursor)
    is dealt with in the purge's own transaction: a purge that fails (the store locked, a
    session claimed meanwhile) changes none of it, and the erasure run again deletes the
    spans and keeps the cursor as it was (a tombstone: a seal still queued of the
    session's records appends nothing twice). (They were deleted in a commit before the
    purge's, so a failed purge lost them.)"""
    from convoy._errors import StoreError
    from convoy.audit import AuditInterceptor
    from convoy.observability._tracing import SPANS_NAMESPACE, Tracing

    async with engine(db, interceptors=[Tracing(live=True), AuditInterceptor()]) as eng:
        res = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
    async with engine(db) as eng:
        raw = eng.store.inner  # type: ignore[attr-defined]
        spans = await raw.kv_all(SPANS_NAMESPACE + res.id)
        cursor = await raw.audit_cursor(res.id)
        assert spans and cursor is not None

        async def locked(*args: object, **kwargs: object) -> None:
            raise StoreError("the store stayed locked (fault injected)")

        with monkeypatch.context() as m:
            m.setattr(raw, "purge", locked)
            with pytest.raises(StoreError, match="nothing was erased"):
                await eng.erase("customer-42")
        assert await raw.kv_all(SPANS_NAMESPACE + res.id) == spans
        assert await raw.audit_cursor(res.id) == cursor
        await eng.erase("customer-42")
        assert await raw.kv_all(SPANS_NAMESPACE + res.id) == {}
        assert await raw.get_session(res.id) is None
        assert await raw.audit_cursor(res.id) == cursor


# Another session's reads of a subject's shared state: the values it journals (a read, a
# lost compare-and-set's current value, its output, what it writes from them) are the
# subject's data too, and go with the subject's key.
SHARED_NAME = "Zed Secretname-Oyelaran"


@convoy.workflow(name="privacy.note")
async def note_subject(ctx: convoy.Context, name: str) -> str:
    await ctx.state("crm").set("c-9", {"name": name}, expected_version=0)
    return "noted"


@convoy.workflow(name="privacy.copy")
async def copy_note(ctx: convoy.Context, wait: bool) -> str:
    got = await ctx.state("crm").get("c-9")
    if wait:
        await ctx.wait_for("go")  # parks: the rest runs after a resume, in another engine
    await ctx.state("copies").set(ctx.session_id, got.value, expected_version=0)
    return f"copied {got.value['name']}"


@convoy.workflow(name="privacy.race")
async def lose_race(ctx: convoy.Context, name: str) -> str:
    await ctx.state("crm").set("c-9", {"name": "someone else"}, expected_version=0)
    return "won"


async def test_another_sessions_copies_of_a_subjects_state_are_erased_with_it(
        tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        copied = await eng.run(copy_note, False)  # no subject of its own
        assert copied.ok and copied.output == f"copied {SHARED_NAME}"
        raced = await eng.run(lose_race, "x")  # loses: the error holds zed's value
        assert raced.status == "failed"
        parked = await eng.run(copy_note, True, session_id="later")
        assert parked.status == "waiting"
        assert scan(files_of(tmp_path), (SHARED_NAME,)) == {}  # sealed at rest
    async with engine(db) as other:  # resumed by another engine
        await other.signal("later", "go")
        [done] = await other.resume()
        assert done.ok and done.output == f"copied {SHARED_NAME}"
        assert (await other.result(copied.id)).output == f"copied {SHARED_NAME}"
        assert scan(files_of(tmp_path), (SHARED_NAME,)) == {}
        await other.erase("zed")
        kept = await other.state("copies").get(copied.id)
        assert kept.exists and SHARED_NAME not in str(kept.value)  # kept, but unreadable
    assert scan(files_of(tmp_path), (SHARED_NAME,)) == {}


async def test_erasure_leaves_no_trace_of_the_subjects_id_in_other_sessions_values(
        tmp_path: Path) -> None:
    """Sealed values name their key by the subject's keyed fingerprint, and erasure deletes
    what maps it back: the values another session keeps sealed under an erased subject's
    key no longer say whose they were (a subject id may be personal data itself)."""
    db = tmp_path / "convoy.db"
    subject = "zed.secretname@example.org"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject=subject)).ok
        copied = await eng.run(copy_note, False)  # no subject of its own: reads zed's
        assert copied.ok and copied.output == f"copied {SHARED_NAME}"
        raw = await eng.store.inner.get_session(copied.id)  # type: ignore[attr-defined]
        assert is_sealed(raw.output) and subject not in raw.output
        await eng.erase(subject)
        kept = await eng.result(copied.id)
        assert kept.output is not None and SHARED_NAME not in str(kept.output)
    assert scan(files_of(tmp_path), (SHARED_NAME, subject)) == {}


async def test_the_export_holds_other_sessions_copies_of_the_subjects_data(
        tmp_path: Path) -> None:
    """Right of access: what other sessions hold of the subject's data (they read its
    shared state and wrote from it, sealed under its key) is in the subject's export too,
    opened; nothing of a session that never read it is."""
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        noted = await eng.run(note_subject, SHARED_NAME, subject="zed")
        copied = await eng.run(copy_note, False)  # no subject of its own
        unrelated = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
        assert noted.ok and copied.ok and unrelated.ok
        doc = await eng.export("zed")
    assert [s["id"] for s in doc["sessions"]] == [noted.id]
    [copy] = doc["copies"]["sessions"]
    assert copy["id"] == copied.id and copy["output"] == f"copied {SHARED_NAME}"
    assert [st["target"] for st in copy["steps"]] == ["get crm/c-9", f"set copies/{copied.id}"]
    assert all(SHARED_NAME in json.dumps(st["result"]) for st in copy["steps"]), copy
    [state] = doc["copies"]["state"]
    assert (state["namespace"], state["key"], state["value"]) == (
        "copies", copied.id, {"name": SHARED_NAME})
    assert IN_NAME not in json.dumps(doc)  # another subject's session is not a copy


async def test_a_key_the_subject_created_past_the_floor_is_exported_and_erased_whole(
        tmp_path: Path) -> None:
    """A review: export and erasure found the keys a subject's sessions created by their
    version 1; a key created again after an erasure deleted it whole starts past the
    tenant's floor (version 2 here), so another writer's version of it (an answer to the
    subject) was neither in the export nor erased."""
    async with engine(tmp_path / "convoy.db") as eng:
        assert (await eng.run(note_subject, "someone else", subject="first")).ok
        await eng.erase("first")  # crm/c-9 goes whole at version 1
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        crm = eng.state("crm")
        assert (await crm.get("c-9")).version == 2
        await crm.set("c-9", {"answer": "to Zed"}, expected_version=2)
        doc = await eng.export("zed")
        assert [(s["version"], s["value"]) for s in doc["state"]] == [
            (2, {"name": SHARED_NAME}), (3, {"answer": "to Zed"})]
        event = await eng.erase("zed")
        assert event.state_versions == 2
        assert (await crm.get("c-9")).version == 0
        assert await eng.store.state_history("default", "crm", "c-9") == []


@convoy.workflow(name="privacy.answer")
async def answer_note(ctx: convoy.Context, answer: dict[str, Any]) -> str:
    crm = ctx.state("crm")  # (the value is not read: nobody's data flows into it)
    await crm.set("c-9", answer["value"], expected_version=answer["version"])
    return "answered"


async def test_a_key_whose_creation_retention_purged_is_nobodys_to_export_or_erase(
        tmp_path: Path) -> None:
    """A retention purge deletes the session that created a shared key; the versions
    others wrote stay. The subject who wrote the oldest version left did not create it:
    its export holds its own version, not the one another session wrote after (another
    person's data), and its erasure deletes its version, not the key."""
    clock = FakeClock()
    async with convoy.Engine(store_from_url(tmp_path / "convoy.db", clock=clock),
                             master_key=MasterKey.from_text(KEY)) as eng:
        assert (await eng.run(note_subject, "someone else", subject="first")).ok  # v1
        clock.advance(31 * 86400)
        mine = {"value": {"name": SHARED_NAME}, "version": 1}
        assert (await eng.run(answer_note, mine, subject="zed")).ok  # v2
        theirs = {"value": {"name": OTHER[0]}, "version": 2}
        assert (await eng.run(answer_note, theirs)).ok  # v3: no subject's session
        [event] = await eng.purge(30 * 86400)  # "first"'s session: its v1 goes
        assert (event.sessions, event.state_versions) == (1, 1)
        doc = await eng.export("zed")
        assert [(s["version"], s["value"]) for s in doc["state"]] == [
            (2, {"name": SHARED_NAME})]
        assert OTHER[0] not in json.dumps(doc)
        erased = await eng.erase("zed")
        assert erased.state_versions == 1
        got = await eng.state("crm").get("c-9")
        assert (got.version, got.value) == (3, {"name": OTHER[0]})


async def test_the_export_holds_a_persons_write_sealed_under_the_subjects_key(
        tmp_path: Path) -> None:
    """A write from outside any session (a person's, in the inbox) to a key whose current
    version is the subject's is sealed under the subject's key: the subject's export holds
    it, on a key the subject did not create too."""
    async with engine(tmp_path / "convoy.db") as eng:
        assert (await eng.run(note_subject, "nobody's")).ok  # v1: no subject's session
        mine = {"value": {"name": SHARED_NAME}, "version": 1}
        assert (await eng.run(answer_note, mine, subject="zed")).ok  # v2
        await eng.state("crm").set("c-9", {"answer": "to Zed"}, expected_version=2)  # v3
        doc = await eng.export("zed")
        assert [(s["version"], s["value"]) for s in doc["state"]] == [
            (2, {"name": SHARED_NAME}), (3, {"answer": "to Zed"})]
        assert "nobody's" not in json.dumps(doc)


@convoy.workflow(name="privacy.mix")
async def mix_notes(ctx: convoy.Context, own: str) -> str:
    got = await ctx.state("crm").get("c-9")  # another subject's data
    return f"{own} saw {got.value['name']}"


async def test_the_export_never_discloses_another_subjects_data(tmp_path: Path) -> None:
    """A value that holds two subjects' data (a session of one that read the other's
    state) is in both exports, withheld: a copy for one person must not show another's."""
    db = tmp_path / "convoy.db"
    bob_value = "Bob Hiddenname-Quist"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        mixed = await eng.run(mix_notes, bob_value, subject="bob")
        assert mixed.ok and mixed.output == f"{bob_value} saw {SHARED_NAME}"
        zed, bob = await eng.export("zed"), await eng.export("bob")
    assert bob_value not in json.dumps(zed) and SHARED_NAME not in json.dumps(bob)
    [copy] = zed["copies"]["sessions"]
    assert copy["id"] == mixed.id and copy["output"]["withheld"]
    [own] = bob["sessions"]
    assert own["input"] == bob_value  # bob's alone: opened
    assert own["output"] == {"sealed": True,
                             "withheld": "it holds another data subject's data too"}


async def test_the_export_says_why_a_value_an_erased_subject_sealed_is_not_shown(
        tmp_path: Path) -> None:
    """Once the other subject is erased, the mixed value cannot be opened at all: it is
    withheld with its reason (it was ``{"sealed": true}``, which the docs never named)."""
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        assert (await eng.run(mix_notes, "Bob", subject="bob")).ok
        await eng.erase("zed")
        [own] = (await eng.export("bob"))["sessions"]
    assert own["input"] == "Bob"
    assert own["output"] == {"sealed": True,
                             "withheld": "it holds an erased data subject's data too"}


@convoy.workflow(name="privacy.escalate_on")
async def escalate_on(ctx: convoy.Context, own: str) -> str:
    got = await ctx.state("crm").get("c-9")  # another subject's data

    async def charge() -> str:
        raise convoy.Escalated(f"cannot charge {got.value['name']}")

    return await ctx.step("charge", charge)


async def test_an_escalation_failed_by_a_person_keeps_the_other_subjects_seal(
        tmp_path: Path) -> None:
    """Bob's session read Zed's state and escalated with Zed's name in its error; a person
    fails it from another engine: the error that ends it is still sealed under Zed's key
    too (withheld from Bob's export, unreadable once Zed is erased)."""
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        res = await eng.run(escalate_on, "bob's", subject="bob")
        assert res.status == "escalated"
    async with engine(db, workflows=[escalate_on]) as other:
        await other.signal(res.id, convoy.ESCALATION, {"action": "fail", "reason": "no"})
        bob = await other.export("bob")
        assert bob["sessions"][0]["status"] == "failed"
        assert SHARED_NAME not in json.dumps(bob), bob["sessions"][0]["error"]
        await other.erase("zed")
        row = await other.store.get_session(res.id)
        assert row is not None and SHARED_NAME not in json.dumps(row.error_record)
    assert scan(files_of(tmp_path), (SHARED_NAME,)) == {}


@convoy.workflow(name="privacy.escalate_own")
async def escalate_own(ctx: convoy.Context, name: str) -> str:
    async def charge() -> str:
        raise convoy.Escalated(f"cannot charge {name}")

    return await ctx.step("charge", charge)


async def test_an_answered_escalation_of_a_subject_is_sealed_and_erased(
        tmp_path: Path) -> None:
    """The task that answers an escalated session holds its error (the subject's data):
    it is sealed at rest and erased with the subject, whatever the answer."""
    db = tmp_path / "convoy.db"
    async with engine(db, workflows=[escalate_own]) as eng:
        for sid, action in (("e1", "fail"), ("e2", "retry"), ("e3", "complete")):
            res = await eng.run(escalate_own, IN_NAME, subject="s-1", session_id=sid)
            assert res.status == "escalated"
            answer = {"action": action, "by": "ann"}
            if action == "complete":  # (a result goes with complete only)
                answer["result"] = "done"
            await eng.signal(sid, convoy.ESCALATION, answer)
        assert scan(files_of(tmp_path), (IN_NAME,)) == {}  # sealed at rest
        assert IN_NAME in json.dumps(await eng.export("s-1"))  # and readable
        await eng.erase("s-1")
    assert scan(files_of(tmp_path), (IN_NAME,)) == {}


async def test_a_persons_answer_to_an_escalation_is_sealed_like_the_session(
        tmp_path: Path) -> None:
    """A session with no subject of its own read Zed's state and escalated; a person
    completes the step by hand with Zed's name in the result: the step is sealed under
    Zed's key like everything else the session holds of Zed (unreadable once Zed is
    erased), and the engine keeps nothing about the answered sessions."""
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        done = await eng.run(escalate_on, "no subject")
        again = await eng.run(escalate_on, "no subject")
        assert done.status == again.status == "escalated"
    async with engine(db, workflows=[escalate_on]) as other:
        await other.signal(done.id, convoy.ESCALATION, {
            "action": "complete", "result": f"charged {SHARED_NAME} by hand"})
        await other.signal(again.id, convoy.ESCALATION, {"action": "retry"})
        assert scan(files_of(tmp_path), (SHARED_NAME,)) == {}  # sealed at rest
        # Written on the session's behalf, outside its run (erased with it), and said so.
        [entry] = await other.store.state_history("default", "convoy.inbox",
                                                  f"{done.id}:escalated")
        assert (entry.session_id, entry.step_key) == (done.id, None)
        assert _writer(entry) == f"session {done.id} (outside its run)"
        store = other.store
        assert not store._live and not store._read  # type: ignore[attr-defined]
        await other.erase("zed")
    assert scan(files_of(tmp_path), (SHARED_NAME,)) == {}


async def test_values_sealed_by_earlier_versions_name_their_subject_and_still_open(
        tmp_path: Path) -> None:
    import base64
    import secrets

    async with engine(tmp_path / "convoy.db") as eng:
        keys = eng.keys
        assert keys is not None
        key = await keys.load("acme", "s-1", create=True)
        assert key is not None and "s-1" not in key.label
        nonce = secrets.token_bytes(12)
        data = base64.b64encode(nonce + key.aead.encrypt(nonce, b'"hello"', b"aad")).decode()
        v1 = json.dumps({"$sealed": "s-1", "v": 1, "d": data})  # format 1: the subject
        layers, text = await keys.peel("acme", "aad", v1)
        assert text == '"hello"' and [name for name, _ in layers] == ["s-1"]
        v3 = json.dumps({"$sealed": key.label, "v": 3, "d": data})
        with pytest.raises(UserError, match="format 3; this Convoy reads formats 1 and 2"):
            await keys.peel("acme", "aad", v3)


async def test_erasure_with_another_master_key_is_refused_and_erases_nothing(
        tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        res = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
    wrong = convoy.Engine(db, master_key=MasterKey.from_text(MasterKey.generate()))
    async with wrong:
        with pytest.raises(UserError, match=TYPO):
            await wrong.erase("customer-42")
    async with engine(db) as eng:
        assert (await eng.result(res.id)).output == res.output  # still there, and opens
        assert await eng.store.erasures() == []


async def test_a_subject_id_used_again_after_erasure_gets_a_new_key_and_label(
        tmp_path: Path) -> None:
    """The values another session keeps sealed under the erased key stay sealed (they are
    not the new key's), and nothing maps their label to the subject again."""
    from convoy.privacy._keys import REFS_NAMESPACE

    db = tmp_path / "convoy.db"
    subject = "zed.secretname@example.org"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject=subject)).ok
        copied = await eng.run(copy_note, False)
        old = await eng.store.inner.get_session(copied.id)  # type: ignore[attr-defined]
        await eng.erase(subject)
        assert await eng.store.kv_all(REFS_NAMESPACE + "default") == {}
        again = await eng.run(serve, {"name": IN_NAME}, subject=subject)
        assert again.ok
        labels = await eng.store.kv_all(REFS_NAMESPACE + "default")
        assert list(labels.values()) == [subject]
        assert not any(label in old.output for label in labels)
        kept = await eng.result(copied.id)  # sealed under the destroyed key: no error
        assert kept.output is not None and SHARED_NAME not in str(kept.output)
        [session] = (await eng.export(subject))["sessions"]
        assert session["id"] == again.id


async def test_a_session_that_read_an_erased_subjects_data_fails_in_one_clear_line(
        tmp_path: Path) -> None:
    """Parked after reading a subject's data, resumed after the subject's erasure: the read
    it replays stays sealed, so it cannot go on, and says why."""
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        parked = await eng.run(copy_note, True, session_id="later")
        assert parked.status == "waiting"
        await eng.erase("zed")
        await eng.signal("later", "go")
        [res] = await eng.resume()
    assert res.status == "failed" and res.error is not None
    assert "holds the data of a data subject who was erased" in res.error["message"]


async def test_a_replay_of_a_session_that_read_an_erased_subjects_data_is_refused(
        tmp_path: Path) -> None:
    """A new user's trial: ``convoy replay`` of a finished session that had read a subject's
    data, after the subject's erasure, said DIVERGED (exit 1), as a change of the code would,
    and printed the sealed envelope. The replay is refused in one line that says why, and
    the recorded result stands."""
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        copied = await eng.run(copy_note, False, session_id="copied")
        assert copied.ok and (await eng.replay("copied")).matches
        await eng.erase("zed")
        with pytest.raises(UserError, match=r"cannot replay session 'copied': a step it "
                           r"replays read data that was erased \(.*\); its recorded result "
                           r"stands as it is"):
            await eng.replay("copied")
        assert (await eng.result("copied")).ok


async def test_a_resume_with_another_master_key_leaves_the_session_to_the_right_one(
        tmp_path: Path) -> None:
    """A session that read a subject's data, resumed by an engine whose master key does not
    open the subject's key: the claim is given up at once, not held by the failed engine
    until its lease lapses."""
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        res = await eng.run(copy_note, True, session_id="w")  # no subject of its own
        assert res.status == "waiting"
        await eng.signal("w", "go")
    wrong = convoy.Engine(db, master_key=MasterKey.from_text(MasterKey.generate()))
    async with wrong:
        with pytest.raises(UserError, match=TYPO):
            await wrong.resume()
        row = await wrong.store.inner.get_session("w")  # type: ignore[attr-defined]
        assert row.status == "pending" and row.owner is None, row
    async with engine(db) as eng:
        [done] = await eng.resume()
        assert done.ok and done.output == f"copied {SHARED_NAME}"


async def test_a_worker_with_another_master_key_gives_a_subjects_session_up(
        tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        res = await eng.run(copy_note, True, subject="zed", session_id="w")
        assert res.status == "waiting"
        await eng.signal("w", "go")
    wrong = convoy.Engine(db, master_key=MasterKey.from_text(MasterKey.generate()))
    wrong.register(copy_note)
    async with wrong:
        with pytest.raises(UserError, match=TYPO):
            await wrong.serve(until_idle=True)
        row = await wrong.store.inner.get_session("w")  # type: ignore[attr-defined]
        assert row.status == "pending" and row.owner is None, row


@convoy.workflow(name="privacy.hear")
async def hear(ctx: convoy.Context, who: str) -> str:
    said = await ctx.wait_for("note")
    return f"{who} said {said}"


async def test_a_signal_to_a_subjects_session_is_sealed_until_and_after_it_is_consumed(
        tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    said = "call me on +49 170 5550199 Quellenberg"
    async with engine(db) as eng:
        res = await eng.run(hear, "ingrid", subject="customer-42", session_id="h1")
        other = await eng.run(hear, "nobody", session_id="h2")
        assert res.status == other.status == "waiting"
        await eng.signal("h1", "note", said)
        await eng.signal("h2", "note", OTHER[0])
        assert scan(files_of(tmp_path), (said,)) == {}  # waiting to be consumed: sealed
        assert scan(files_of(tmp_path), (OTHER[0],))  # (a session without a subject: plain)
        done = {r.id: r for r in await eng.resume()}
        assert done["h1"].output == f"ingrid said {said}"  # opened for the session
        assert done["h2"].output == f"nobody said {OTHER[0]}"
        assert scan(files_of(tmp_path), (said,)) == {}
        await eng.erase("customer-42")
    assert scan(files_of(tmp_path), (said,)) == {}


async def test_signals_read_for_many_sessions_at_once_come_opened_as_one_sessions_do(
        tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    said = "call me on +49 170 5550199 Quellenberg"
    async with engine(db) as eng:
        for sid, who, subject in (("h1", "ingrid", "customer-42"), ("h2", "nobody", None)):
            assert (await eng.run(hear, who, subject=subject, session_id=sid)).status \
                == "waiting"
        await eng.signal("h1", "note", said)
        await eng.signal("h2", "note", OTHER[0])
        raw = await eng.store.inner.next_signals(  # type: ignore[attr-defined]
            ["h1", "h2"], "note")
        assert is_sealed(raw["h1"].payload) and not is_sealed(raw["h2"].payload)
        got = await eng.store.next_signals(["h1", "h2", "nope"], "note")
        assert got == {sid: await eng.store.next_signal(sid, "note") for sid in ("h1", "h2")}
        assert [json.loads(got[s].payload) for s in ("h1", "h2")] == [said, OTHER[0]]
        assert await eng.store.next_signals(["h1", "h2"], "note", tenant="other") == {}


def gated_serve(name: str, gate: Callable[[], Awaitable[None]]) -> convoy.Workflow[Any, Any]:
    """A workflow whose clerk looks the customer up with a tool that first awaits
    ``gate()`` (a test holds the session there, in the middle of a step), then answers
    with the model's planted phone number."""

    @convoy.tool(name=f"{name}-lookup")
    async def lookup_gated(ctx: convoy.ToolContext, name: str) -> dict[str, str]:
        """The customer's bank account, once the gate opens."""
        await gate()
        return {"name": name, "iban": TOOL_IBAN}

    def script(req: convoy.ModelRequest) -> Any:
        if not any(m.role == "tool" for m in req.messages):
            return {"tool_calls": [{"name": lookup_gated.name, "arguments": {"name": IN_NAME}}]}
        return {"output": {"text": f"call {MODEL_PHONE}"}}

    clerk_gated = convoy.Agent(name=f"{name}-clerk", input_type=Customer, output_type=Reply,
                               model=convoy.SimModel(script), tools=[lookup_gated])

    @convoy.workflow(name=f"privacy.{name}")
    async def serve_gated(ctx: convoy.Context, c: Customer) -> str:
        return (await ctx.run(clerk_gated, c)).text

    return serve_gated


async def test_a_run_that_loses_its_lease_leaves_nothing_of_its_subject_behind(
        tmp_path: Path) -> None:
    """An engine stalls in a subject's session past its lease; another engine takes the
    session over and finishes it. The first one's run ends refused (LeaseLost), and it
    keeps nothing of the session: not its subject's key, not the session as its own."""
    db = tmp_path / "convoy.db"
    clock = FakeClock()
    stalled, go, both_in = asyncio.Event(), asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def gate() -> None:
        calls.append("slow")
        stalled.set()
        if len(calls) == 2:
            both_in.set()
        await go.wait()

    slow_serve = gated_serve("slow", gate)
    first, second = (convoy.Engine(store_from_url(db, clock=clock), workflows=[slow_serve],
                                   master_key=MasterKey.from_text(KEY)) for _ in range(2))
    async with first, second:
        task = asyncio.create_task(first.run(slow_serve, Customer(name=IN_NAME),
                                             subject="s-1", session_id="lost"))
        await stalled.wait()
        clock.advance(3600)  # the first engine stalled past its lease
        taker = asyncio.create_task(second.resume())
        await both_in.wait()
        go.set()
        [taken] = await taker
        lost = await task
        assert taken.ok and lost.status == "running"
        assert (lost.error or {}).get("type") == "LeaseLost"
        store = first.store
        assert "lost" not in store._running  # type: ignore[attr-defined]
        assert "lost" not in store._live and "lost" not in store._read  # type: ignore[attr-defined]


def _summary(req: convoy.ModelRequest) -> Any:
    return {"text": "reach the customer: " + (req.messages[-1].content or "")}


summarizer = convoy.Agent(name="summarizer", model=convoy.SimModel(_summary))


@convoy.workflow(name="privacy.summarize")
async def summarize_note(ctx: convoy.Context, key: str) -> str:
    got = await ctx.state("crm").get(key)
    return str(await ctx.run(summarizer, f"write to {got.value['name']}"))


async def test_a_model_answer_about_a_subject_read_from_shared_state_is_not_cached(
        tmp_path: Path) -> None:
    """A session without a subject of its own reads a subject's shared state and gives
    it to a model. The answer holds the subject's data: the response cache keeps it
    nowhere (the shared store's cache would hold it in plaintext, out of erasure's
    reach), so nothing of the subject is left once erased. The same question asked of
    data that is no one's is cached as before."""
    from convoy.cost import ResponseCache

    db = tmp_path / "convoy.db"
    cache = ResponseCache()
    async with engine(db, interceptors=[cache]) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        for _ in range(2):
            res = await eng.run(summarize_note, "c-9")  # no subject of its own
            assert res.ok and SHARED_NAME in str(res.output)
        assert cache.hits == 0
        await eng.run(note_subject, OTHER[0], session_id="n2", tenant="t2")
        for _ in range(2):
            assert (await eng.run(summarize_note, "c-9", tenant="t2")).ok
        assert cache.hits == 1  # no one's data: cached
        await eng.erase("zed")
    assert scan(files_of(tmp_path), (SHARED_NAME,)) == {}
    assert scan(files_of(tmp_path), (OTHER[0],))  # the control is still there


async def test_a_subject_is_not_erased_while_another_engine_runs_its_session(
        tmp_path: Path) -> None:
    """Erasing a subject whose session another engine is running would leave that engine
    writing journal and state rows for a session that no longer exists (out of every
    later erasure's reach): it is refused, with nothing deleted, until the run ends."""
    db = tmp_path / "convoy.db"
    reached, go = asyncio.Event(), asyncio.Event()

    async def gate() -> None:
        reached.set()
        await go.wait()

    held_serve = gated_serve("held", gate)

    async with engine(db) as runner, engine(db) as eraser:
        task = asyncio.create_task(runner.run(held_serve, Customer(name=IN_NAME),
                                              subject="s-1", session_id="busy"))
        await reached.wait()
        with pytest.raises(UserError, match="'busy' is running on engine") as refused:
            await eraser.erase("s-1")
        # (when that engine's lease lapses: a killed one holds it until then, review F11)
        assert "its lease has lapsed (in " in str(refused.value) and \
            " s at the latest" in str(refused.value)
        # on the command line: one line, exit 1 (not misuse: it succeeds once it ended)
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "convoy.cli", "erase", "s-1", "--db",
                             str(db)], env={**subprocess_env(), "CONVOY_MASTER_KEY": KEY},
            capture_output=True, text=True, timeout=120, check=False)
        assert cli.returncode == 1, cli.stderr
        assert cli.stderr.startswith("error: session 'busy' is running on engine"), cli.stderr
        assert "nothing was deleted; erase again once it has ended" in cli.stderr
        assert await eraser.store.get_session("busy") is not None  # nothing deleted
        go.set()
        assert (await task).ok
        event = await eraser.erase("s-1")
        assert event.sessions == 1 and event.key
    assert scan(files_of(tmp_path), PLANTED) == {}


async def test_an_engine_that_held_a_subjects_key_uses_no_key_another_engine_erased(
        db: str | Path) -> None:
    """An engine that stays up while another process erases a subject does not go on
    sealing the subject's new data under the destroyed key (which it would still hold,
    and which no export could open): a session of the subject started after the erasure
    has a new key, and is exported and erased as any other; the answers its response
    cache gave the erased subject are not given to the new one (the review of 2026-12-03,
    G1, G2)."""
    from convoy.cost import ResponseCache

    cache = ResponseCache()
    async with engine(db, interceptors=[cache]) as runner:
        first = await runner.run(serve, Customer(name=IN_NAME), subject="s-9",
                                 session_id="before")
        assert first.ok
        async with engine(db) as eraser:
            event = await eraser.erase("s-9")
            assert event.sessions == 1 and event.key
        again = await runner.run(serve, Customer(name=IN_NAME), subject="s-9",
                                 session_id="after")
        assert again.ok and cache.hits == 0 and again.usage.input_tokens > 0
        async with engine(db) as other:  # (a process that never held the key)
            shown = await other.result("after")
            assert shown.output == again.output, shown
            [session] = (await other.export("s-9"))["sessions"]
            assert session["id"] == "after" and MODEL_PHONE in json.dumps(session)
            event = await other.erase("s-9")
            assert event.sessions == 1 and event.key


@convoy.workflow(name="privacy.serve-then-wait")
async def serve_then_wait(ctx: convoy.Context, c: Customer) -> str:
    reply = await ctx.run(clerk, c)
    await ctx.wait_for("go")  # parks: the steps before replay in the run that resumes it
    return reply.text


async def test_a_subjects_journal_fingerprints_are_keyed(tmp_path: Path) -> None:
    """The journal keeps a digest of what each step was asked (replay compares it). For a
    subject's session it is keyed with the subject's key: whoever holds the database file
    but not the master key cannot test a guess (an e-mail address, a name) against it.
    The same steps of a session without a subject keep the plain digest; a subject's
    session resumed from its journal still replays."""
    db = tmp_path / "convoy.db"
    async with engine(db, workflows=[serve_then_wait]) as eng:
        mine = await eng.run(serve_then_wait, {"name": IN_NAME}, subject="customer-42",
                             session_id="mine")
        other = await eng.run(serve_then_wait, {"name": IN_NAME}, tenant="t2",
                              session_id="other")
        assert mine.status == other.status == "waiting"
        raw = eng.store.inner  # type: ignore[attr-defined]
        keyed_fps = {r.input_hash for r in await raw.journal("mine") if r.input_hash}
        plain_fps = {r.input_hash for r in await raw.journal("other") if r.input_hash}
        assert keyed_fps and plain_fps and not keyed_fps & plain_fps
        await eng.signal("mine", "go", True)
    async with engine(db, workflows=[serve_then_wait]) as again:
        done = {r.id: r for r in await again.resume()}
        assert done["mine"].ok, done["mine"].error


async def test_a_second_master_key_is_refused_before_it_seals_anything(db: str | Path) -> None:
    """A store is bound to the master key its first subject key was wrapped under: an engine
    with another one (a typo'd key file) is refused before it writes a key, a label or a
    session, so the store never holds subjects that its own key cannot open."""
    from convoy.privacy._keys import REFS_NAMESPACE
    from convoy.stores._protocol import SessionFilter

    async with engine(db) as eng:
        assert (await eng.run(serve, {"name": IN_NAME}, subject="a")).ok
    typo = convoy.Engine(db, master_key=MasterKey.from_text(MasterKey.generate()))
    async with typo:
        with pytest.raises(UserError, match=TYPO) as refused:
            await typo.run(serve, {"name": OTHER[0]}, subject="b")
        assert "\n" not in str(refused.value) and "$CONVOY_MASTER_KEY_FILE" in str(refused.value)
        raw = typo.store.inner  # type: ignore[attr-defined]
        assert await raw.subject_key_get("default", "b") is None
        assert list((await raw.kv_all(REFS_NAMESPACE + "default")).values()) == ["a"]
        assert [r.subject for r in await raw.list_sessions(SessionFilter())] == ["a"]
        for wrong in (typo.export, typo.erase):  # not "unknown subject": the key is wrong
            for who in ("a", "b"):
                with pytest.raises(UserError, match=TYPO):
                    await wrong(who)
        assert await raw.erasures() == []
    async with engine(db) as eng:
        assert (await eng.run(serve, {"name": OTHER[0]}, subject="b")).ok
        [session] = (await eng.export("b"))["sessions"]
        assert session["input"] == {"name": OTHER[0]}
        assert (await eng.erase("b")).key and (await eng.erase("a")).key


async def test_a_store_made_before_the_master_key_check_is_bound_to_the_key_that_opens_it(
        db: str | Path) -> None:
    """A store an earlier Convoy wrote keeps no check of its master key: one of its subject
    keys is the check (another key is refused), and the first key that opens it writes it."""
    from convoy.privacy._keys import CHECK_KEY, CHECK_NAMESPACE

    async with engine(db) as eng:
        res = await eng.run(serve, {"name": IN_NAME}, subject="a")
        raw = eng.store.inner  # type: ignore[attr-defined]
        assert await raw.kv_get(CHECK_NAMESPACE, CHECK_KEY) is not None
        await raw.kv_put(CHECK_NAMESPACE, CHECK_KEY, None)  # as an earlier Convoy left it
    typo = convoy.Engine(db, master_key=MasterKey.from_text(MasterKey.generate()))
    async with typo:
        with pytest.raises(UserError, match=TYPO):
            await typo.run(serve, {"name": OTHER[0]}, subject="b")
        with pytest.raises(UserError, match=TYPO):
            await typo.erase("a")
        raw = typo.store.inner  # type: ignore[attr-defined]
        assert await raw.subject_key_get("default", "b") is None
        assert await raw.kv_get(CHECK_NAMESPACE, CHECK_KEY) is None
        assert await raw.erasures() == []
    async with engine(db) as eng:
        assert (await eng.result(res.id)).output == res.output  # opens, and writes the check
        raw = eng.store.inner  # type: ignore[attr-defined]
        assert await raw.kv_get(CHECK_NAMESPACE, CHECK_KEY) is not None
        assert (await eng.run(serve, {"name": OTHER[0]}, subject="b")).ok


async def test_the_master_key_is_checked_once_per_engine_not_per_session(
        db: str | Path) -> None:
    """Starting a subject's session costs no read of the check once the engine made one (a
    check that changed under a running engine, which nothing does, goes unnoticed by it;
    a new engine reads it)."""
    from convoy.privacy._keys import CHECK_KEY, CHECK_NAMESPACE

    async with engine(db) as eng:
        res = await eng.run(serve, {"name": IN_NAME}, subject="a")
        raw = eng.store.inner  # type: ignore[attr-defined]
        another = MasterKey.from_text(MasterKey.generate()).check()  # (not this key's)
        await raw.kv_put(CHECK_NAMESPACE, CHECK_KEY, another)
        assert (await eng.run(serve, {"name": OTHER[0]}, subject="b")).ok
    async with engine(db) as eng:
        with pytest.raises(UserError, match=TYPO):
            await eng.result(res.id)


async def test_a_subject_key_wrapped_under_another_master_key_names_the_cause_and_erases(
        tmp_path: Path) -> None:
    """A store an earlier Convoy split across two master keys: with the store's key, the
    other subject's export says its key was wrapped under another master key, and its
    erasure (which needs no key opened: the check proves the master key) goes through."""
    import secrets

    from convoy.privacy._keys import _key_aad

    db = tmp_path / "convoy.db"
    async with engine(db) as eng:
        assert (await eng.run(serve, {"name": IN_NAME}, subject="a")).ok
        other = MasterKey.from_text(MasterKey.generate())
        raw = eng.store.inner  # type: ignore[attr-defined]
        await raw.subject_key_put("default", "b", other.wrap(secrets.token_bytes(32),
                                                             _key_aad("default", "b")))
        with pytest.raises(JournalError, match=r"key of subject 'b' .* another master key"):
            await eng.export("b")
        assert (await eng.erase("b")).key
        assert await raw.subject_key_get("default", "b") is None
        assert [s["input"] for s in (await eng.export("a"))["sessions"]] == [{"name": IN_NAME}]


async def test_an_erasure_the_store_could_not_compact_is_audited_and_forgotten(
        tmp_path: Path) -> None:
    """Another process holds the store in a read transaction, so the erasure cannot be
    compacted: it is erased all the same, and everything that goes with an erasure
    happens (its audit entry, the caches forgetting the subject's answers) before the
    error says what is left to do."""
    import sqlite3

    from convoy._errors import StoreError
    from convoy.audit import AuditInterceptor
    from convoy.cost import ResponseCache

    db = tmp_path / "convoy.db"
    cache, audit = ResponseCache(), AuditInterceptor()
    async with engine(db, interceptors=[cache, audit]) as eng:
        assert (await eng.run(serve, {"name": IN_NAME}, subject="s-1")).ok
        assert cache.forget_subject("default", "nobody") == 0
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sessions").fetchone()
        eng.store.busy_timeout = 0.2  # type: ignore[attr-defined]
        try:
            with pytest.raises(StoreError, match=r"erased subject 's-1' .* but the store"):
                await eng.erase("s-1")
        finally:
            reader.close()
        size = await eng.store.audit_size("default")
        last = await eng.store.audit_entry("default", size - 1)
        assert last is not None and b'"kind":"erasure"' in last.body
        assert cache.forget_subject("default", "s-1") == 0  # forgotten already


async def test_a_compaction_another_transaction_blocks_says_what_is_left(
        db: str | Path) -> None:
    """On both stores: a transaction of another process keeps the erasure's compaction
    from running (SQLite: a read transaction; PostgreSQL: a lock VACUUM FULL waits
    for): one line that says the subject was erased and to run 'convoy db compact'."""
    from convoy._errors import StoreError

    store = store_from_url(db, busy_timeout=0.3)
    async with convoy.Engine(store, master_key=MasterKey.from_text(KEY)) as eng:
        assert (await eng.run(serve, {"name": IN_NAME}, subject="s-1")).ok
        if isinstance(db, Path):
            import sqlite3

            reader: Any = sqlite3.connect(db, isolation_level=None)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM journal").fetchone()
        else:
            import psycopg

            base, _, schema = str(db).partition("?schema=")
            reader = psycopg.connect(base)
            reader.execute(f'SET search_path TO "{schema}"')  # type: ignore[arg-type]
            reader.execute("SELECT count(*) FROM journal").fetchone()  # holds a lock
        try:
            # (with the store: the command compacts that one, not ./convoy.db)
            with pytest.raises(StoreError, match=r"erased subject 's-1' .*could not be "
                                                 r"compacted.*'convoy db compact --db "):
                await eng.erase("s-1")
        finally:
            reader.close()
        assert await eng.store.subject_sessions("default", "s-1") == []


async def test_the_stores_own_checkpoints_never_make_a_compaction_report_busy(
        tmp_path: Path) -> None:
    """SQLite runs one checkpoint at a time: the store's checkpointer thread, if its
    PASSIVE checkpoint was running when compaction ended with a TRUNCATE one, made a
    quiet store's compaction say another process held it (about one purge in three on a
    large store). Here the checkpointer runs back to back, so it nearly always would."""
    from convoy.stores import SQLiteStore
    from convoy.stores._sqlite_wal import _Checkpointer

    store = SQLiteStore(tmp_path / "c.db")
    await store.open()
    try:
        assert store._checkpointer is not None
        store._checkpointer.stop()
        store._checkpointer = _Checkpointer(store.path, interval=0.0)
        for i in range(30):
            await store.kv_put_many([("ns", f"k{i}-{j}", "v" * 500) for j in range(200)])
            await store.compact()  # raises StoreError when it reports busy
    finally:
        await store.aclose()


async def _looks_sealed() -> dict[str, str]:
    return {"$sealed": "ZQXLOOK ada@example.com", "v": "x"}


@convoy.workflow(name="privacy.looks_sealed")
async def looks_sealed(ctx: convoy.Context, x: str) -> dict[str, str]:
    out: dict[str, str] = await ctx.step("looks", _looks_sealed)
    return out


async def test_a_subjects_value_that_looks_like_a_sealed_one_opens_as_the_value(
        tmp_path: Path) -> None:
    """A step of a data subject's session whose result is JSON keyed ``$sealed`` (a tool's
    dict) is sealed as any result is; opened, it is the value, not a layer that does not
    open: the session's journal reads, its export holds it, and no error line quotes it
    (review of stop 45: the error quoted the opened text; before, the session could not
    be read at all)."""
    async with engine(tmp_path / "c.db") as eng:
        res = await eng.run(looks_sealed, "x", subject="ada")
        assert res.ok, res.error
        [rec] = [r for r in await eng.journal(res.id) if r.kind == "effect"]
        assert json.loads(rec.result or "") == await _looks_sealed()
        got = await eng.session(res.id)
        assert "ZQXLOOK" in got.output
        export = await eng.export("ada")
        assert "ZQXLOOK" in json.dumps(export)


def test_a_damaged_sealed_value_is_named_by_where_it_is_and_never_quoted() -> None:
    """The line a damaged sealed value gives names where it is (its associated data: the
    tenant, session and step), and never quotes it: opened layers hold personal data."""
    from convoy.privacy._seal import sealed_label

    for text in ('{"$sealed": oops ZQXDAMAGED', '{"$sealed": "k", "v": 2}',
                 '{"$sealed": ["ZQXDAMAGED"], "d": "x"}'):
        with pytest.raises(JournalError) as e:  # (a damaged row: a store error)
            sealed_label(text, "convoy/v1/acme/session/s-1/step/3")
        assert "ZQXDAMAGED" not in str(e.value) and "$sealed" not in str(e.value)
        assert "convoy/v1/acme/session/s-1/step/3" in str(e.value), str(e.value)
        assert "damaged" in str(e.value)


async def test_a_subject_named_by_personal_data_is_warned_of_once_without_the_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A subject named by an e-mail address works, with a warning that says its name is
    kept as given (a PostgreSQL server's WAL keeps it after an erasure) and what to name
    subjects by; once a process, and the name is not in it. An opaque id is not warned
    of."""
    from convoy.privacy import _subject_names

    monkeypatch.setattr(_subject_names, "_WARNED", set())
    key = MasterKey.from_text(KEY)

    @convoy.workflow(name="privacy.named")
    async def named(ctx: convoy.Context, x: str) -> str:
        return x

    async with convoy.Engine(tmp_path / "s.db", master_key=key) as engine:
        with caplog.at_level("WARNING", logger="convoy"):
            assert (await engine.run(named, "x", subject="customer-42")).ok
            assert not caplog.records
            for i, who in enumerate(["ingrid.q@example.org", "bert.o@example.org"]):
                assert (await engine.run(named, "x", subject=who, session_id=f"s{i}")).ok
        [warned] = caplog.records
        said = warned.getMessage()
        assert said.startswith("a data subject is named by an e-mail address: the name is "
                               "stored as given"), said
        assert "opaque id" in said and "@" not in said
        assert (await engine.erase("ingrid.q@example.org")).sessions == 1
