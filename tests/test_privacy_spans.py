"""The spans the embedded trace store keeps for a session that holds a data subject's data
are sealed like the rest of that data: under the subject's key (and the keys of the
subjects whose data it read), written with the commit that ends each run, opened through
the engine and by ``convoy trace`` with the master key, unreadable once the subject is
erased."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import convoy
from convoy.observability import Tracing
from convoy.observability._spans import load_chunks
from convoy.observability._tracing import SPANS_NAMESPACE
from convoy.privacy._seal import is_sealed

from .clikit import cli, subprocess_cli, workdir  # noqa: F401 - workdir: a fixture
from .conftest import STORE_KINDS, store_db
from .test_privacy import (
    IN_NAME,
    KEY,
    PLANTED,
    SHARED_NAME,
    ask_refund,
    copy_note,
    engine,
    files_of,
    lose_race,
    mix_notes,
    note_subject,
    scan,
    serve,
)


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def tracing() -> Tracing:
    # Content captured and not redacted: the planted values are in the spans' attributes.
    return Tracing(["store"], capture_content=True, redact=False)


def attributes(chunks: dict[str, str]) -> str:
    return json.dumps([s["attrs"] for s in load_chunks(chunks[k] for k in sorted(chunks))])


async def test_a_subjects_spans_are_sealed_at_rest_and_open_through_the_engine(
        db: str | Path) -> None:
    async with engine(db, interceptors=[tracing()]) as eng:
        res = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
        ctl = await eng.run(serve, {"name": "Nobody In Particular"})
        ns = SPANS_NAMESPACE + res.id
        raw = await eng.store.inner.kv_all(ns)  # type: ignore[attr-defined]
        assert raw and all(is_sealed(v) for v in raw.values())
        assert not any(v in text for v in PLANTED for text in raw.values())
        opened = await eng.store.kv_all(ns)
        assert IN_NAME in attributes(opened)  # what was sealed is the spans, all of them
        # A session without a subject: its spans as they were.
        plain = await eng.store.inner.kv_all(  # type: ignore[attr-defined]
            SPANS_NAMESPACE + ctl.id)
        assert plain and not any(is_sealed(v) for v in plain.values())
        await eng.erase("customer-42")
        assert await eng.store.inner.kv_all(ns) == {}  # type: ignore[attr-defined]


async def test_no_byte_of_a_subjects_spans_is_in_the_files_before_or_after_erasure(
        tmp_path: Path) -> None:
    path = tmp_path / "convoy.db"
    async with engine(path, interceptors=[tracing()]) as eng:
        await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
    assert scan(files_of(tmp_path), PLANTED) == {}
    async with engine(path) as eng:
        await eng.erase("customer-42")
    assert scan(files_of(tmp_path), (*PLANTED, "customer-42")) == {}


async def test_the_spans_of_a_session_that_read_a_subjects_data_go_with_its_key(
        tmp_path: Path) -> None:
    path = tmp_path / "convoy.db"
    async with engine(path, interceptors=[tracing()]) as eng:
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        copy = await eng.run(copy_note, False)  # no subject of its own; reads zed's
        assert copy.ok
        ns = SPANS_NAMESPACE + copy.id
        raw = await eng.store.inner.kv_all(ns)  # type: ignore[attr-defined]
        assert raw and all(is_sealed(v) for v in raw.values())
        assert eng.keys is not None
        assert [(await eng.keys.outer("default", v))[0] for v in raw.values()] == \
            ["zed"] * len(raw)
        assert "privacy.copy" in attributes(await eng.store.kv_all(ns))  # opened
        await eng.erase("zed")
        # The reader's spans stay (it is not zed's session), unreadable.
        after = await eng.store.kv_all(ns)
        assert after and all(is_sealed(v) for v in after.values())
    assert scan(files_of(tmp_path), (SHARED_NAME,)) == {}


async def test_a_persons_decision_on_a_subjects_session_is_a_sealed_span(
        tmp_path: Path) -> None:
    path = tmp_path / "convoy.db"
    note = "Spoke to Ingrid on +44 20 7946 0958"
    async with engine(path, interceptors=[tracing()]) as eng:
        res = await eng.run(ask_refund, IN_NAME, subject="customer-42")
        assert res.status == "waiting"
    # Decided by another engine, outside the session's run: the span of the decision is
    # sealed under the keys found in the session's row and journal.
    async with engine(path, interceptors=[tracing()]) as eng:
        [task] = await eng.inbox.tasks()
        await eng.inbox.answer(task.id, {"approve": True, "note": note}, by="alice")
        await eng.aclose()  # the spans are written
        await eng.open()
        ns = SPANS_NAMESPACE + res.id
        raw = await eng.store.inner.kv_all(ns)  # type: ignore[attr-defined]
        assert len(raw) == 2 and all(is_sealed(v) for v in raw.values())
        opened = await eng.store.kv_all(ns)
        names = [s["name"] for s in load_chunks(opened[k] for k in sorted(opened))]
        assert "human_decision" in names and note in attributes(opened)
    assert scan(files_of(tmp_path), (*PLANTED, note)) == {}


def test_convoy_trace_opens_sealed_spans_with_the_master_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "convoy.db"

    async def run() -> str:
        async with engine(path, interceptors=[tracing()]) as eng:
            return (await eng.run(serve, {"name": IN_NAME}, subject="customer-42")).id

    sid = asyncio.run(run())
    monkeypatch.delenv("CONVOY_MASTER_KEY", raising=False)
    monkeypatch.delenv("CONVOY_MASTER_KEY_FILE", raising=False)
    # Without the key: the spans derived from its journal, and one line that says the
    # kept ones are sealed and how to read them.
    locked = cli("trace", sid, "--db", str(path))
    assert locked.code == 0, locked.stderr
    assert "invoke_workflow privacy.serve" in locked.stdout and IN_NAME not in locked.stdout
    [note] = locked.stderr.strip().splitlines()
    assert "sealed" in note and "CONVOY_MASTER_KEY_FILE" in note, note
    assert "chunk" in note and "spans derived from its journal" in note, note
    assert "a model call's model, for one" in note, note  # (its agent called a model)
    opened = cli("trace", sid, "--db", str(path), "--json", env={"CONVOY_MASTER_KEY": KEY})
    assert opened.code == 0, opened.stderr
    assert IN_NAME in opened.stdout
    assert "invoke_workflow privacy.serve" in {s["name"] for s in json.loads(opened.stdout)}


async def test_the_export_has_the_subjects_spans_and_withholds_mixed_ones(
        tmp_path: Path) -> None:
    path = tmp_path / "convoy.db"
    bob_value = "Bob Hiddenname-Quist"
    async with engine(path, interceptors=[tracing()]) as eng:
        own = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
        assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
        mixed = await eng.run(mix_notes, bob_value, subject="bob")  # reads zed's data
        assert own.ok and mixed.ok
        mine, zed, bob = (await eng.export("customer-42"), await eng.export("zed"),
                          await eng.export("bob"))
    [session] = mine["sessions"]
    names = {s["name"] for s in session["spans"]}
    assert "invoke_workflow privacy.serve" in names and "invoke_agent clerk" in names
    assert IN_NAME in json.dumps(session["spans"])  # opened, with the captured content
    # Bob's run read zed's data: its spans hold both, withheld from each.
    [bobs] = bob["sessions"]
    assert bobs["spans"] and all(s.get("withheld") for s in bobs["spans"])
    [copy] = zed["copies"]["sessions"]
    assert copy["id"] == mixed.id and all(s.get("withheld") for s in copy["spans"])
    assert bob_value not in json.dumps(zed) and SHARED_NAME not in json.dumps(bob)


def test_convoy_trace_of_a_session_that_read_an_erased_subjects_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "convoy.db"

    async def run() -> str:
        async with engine(path, interceptors=[tracing()]) as eng:
            assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
            copy = await eng.run(copy_note, False)
            await eng.erase("zed")
            return copy.id

    sid = asyncio.run(run())
    monkeypatch.delenv("CONVOY_MASTER_KEY", raising=False)
    monkeypatch.delenv("CONVOY_MASTER_KEY_FILE", raising=False)
    # With the key, the spans kept for it stay sealed (zed's key is destroyed): the spans
    # derived from its journal are drawn in their place, as without the key (review s29),
    # and one line says why.
    for env in ({"CONVOY_MASTER_KEY": KEY}, {}):
        for args in ((), ("--json",)):
            res = cli("trace", sid, "--db", str(path), *args, env=env)
            assert res.code == 0, res.stderr
            assert "invoke_workflow privacy.copy" in res.stdout
            assert SHARED_NAME not in res.stdout and "no spans kept" not in res.stdout
            [note] = res.stderr.strip().splitlines()
            assert "chunk" in note, note
            assert ("erased" in note) == bool(env), note


def test_the_inbox_without_the_master_key_says_so_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "convoy.db"

    async def run() -> None:
        async with engine(path) as eng:
            res = await eng.run(ask_refund, IN_NAME, subject="customer-42")
            assert res.status == "waiting"

    asyncio.run(run())
    monkeypatch.delenv("CONVOY_MASTER_KEY", raising=False)
    monkeypatch.delenv("CONVOY_MASTER_KEY_FILE", raising=False)
    locked = cli("inbox", "list", "--db", str(path))
    assert locked.code == 0 and "CONVOY_MASTER_KEY_FILE" in locked.stdout, locked
    [line] = [ln for ln in locked.stdout.splitlines() if "sealed" in ln]
    assert line.startswith("1 task is sealed"), locked
    assert "no open tasks" not in locked.stdout  # (there is one: sealed)
    opened = cli("inbox", "list", "--db", str(path), env={"CONVOY_MASTER_KEY": KEY})
    assert opened.code == 0 and "1 task" in opened.stdout, opened
    assert "sealed" not in opened.stdout


@convoy.workflow(name="privacy.ask-about")
async def ask_about(ctx: convoy.Context, key: str) -> str:
    got = await ctx.state("crm").get(key)
    answer = await ctx.ask_human(f"Call {got.value['name']}?", str, queue="calls")
    return answer.value


def test_a_task_holding_an_erased_subjects_data_leaves_the_inbox_usable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session of no subject read Zed's data and asked a person about it; Zed is erased.
    The task stays sealed for good: the inbox still lists the other tasks and says which
    one stays sealed and why, the metrics exporter still counts, and once the session is
    cancelled the task is gone from the open ones."""
    from convoy.cli._common import Scope
    from convoy.cli._metrics import StoreCollector

    path = tmp_path / "convoy.db"

    async def run() -> str:
        async with engine(path) as eng:
            assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
            asked = await eng.run(ask_about, "c-9")  # no subject of its own
            other = await eng.run(ask_refund, "nobody's data")
            assert asked.status == other.status == "waiting"
            await eng.erase("zed")
            sealed: list[str] = []
            tasks = await eng.inbox.tasks(sealed=sealed)
            assert [t.session_id for t in tasks] == [other.id]
            assert [s.split(":")[0] for s in sealed] == [asked.id]
            return asked.id

    sid = asyncio.run(run())
    monkeypatch.setenv("CONVOY_MASTER_KEY", KEY)
    listed = cli("inbox", "list", "--db", str(path))
    assert listed.code == 0 and "1 task" in listed.stdout, listed
    assert "Refund nobody's" in listed.stdout  # (the question: the table may wrap it)
    [line] = [ln for ln in listed.stdout.splitlines() if "sealed" in ln]
    assert "erased" in line and sid in line and "convoy cancel" in line, line
    families = {f.name: f for f in StoreCollector(str(path), Scope(None)).collect()}
    counts = {tuple(s.labels.values()): s.value
              for s in families["convoy_store_human_tasks_open"].samples}
    assert counts == {("default", "question", "billing"): 1, ("default", "sealed", ""): 1}, \
        counts
    assert cli("cancel", sid, "--db", str(path)).code == 0
    after = cli("inbox", "list", "--db", str(path))
    assert after.code == 0 and "sealed" not in after.stdout, after


def _lost_race(path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A session (its id) that failed holding subject zed's value in its error (so sealed
    under zed's key), and no master key in the environment."""
    async def run() -> str:
        async with engine(path) as eng:
            assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
            raced = await eng.run(lose_race, "x")  # its error holds zed's current value
            assert raced.status == "failed"
            return raced.id

    sid = asyncio.run(run())
    monkeypatch.delenv("CONVOY_MASTER_KEY", raising=False)
    monkeypatch.delenv("CONVOY_MASTER_KEY_FILE", raising=False)
    return sid


def test_convoy_sessions_show_opens_a_sealed_error_with_the_master_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "convoy.db"
    sid = _lost_race(path, monkeypatch)
    locked = cli("sessions", "show", sid, "--db", str(path))
    assert locked.code == 0 and "error: (sealed: it holds a data subject's data" in \
        locked.stdout, locked
    opened = cli("sessions", "show", sid, "--db", str(path), env={"CONVOY_MASTER_KEY": KEY})
    assert opened.code == 0 and "StateConflict" in opened.stdout, opened
    assert SHARED_NAME in cli("sessions", "show", sid, "--db", str(path), "--json",
                              env={"CONVOY_MASTER_KEY": KEY}).stdout

    async def erase() -> None:
        async with engine(path) as eng:
            await eng.erase("zed")

    asyncio.run(erase())
    gone = cli("sessions", "show", sid, "--db", str(path), env={"CONVOY_MASTER_KEY": KEY})
    assert "error: (sealed under the key of a data subject who was erased)" in gone.stdout


def test_convoy_sessions_show_names_the_data_subject(tmp_path: Path) -> None:
    path = tmp_path / "convoy.db"

    async def run() -> str:
        async with engine(path) as eng:
            return (await eng.run(serve, {"name": IN_NAME}, subject="customer-42")).id

    sid = asyncio.run(run())
    shown = cli("sessions", "show", sid, "--db", str(path), env={"CONVOY_MASTER_KEY": KEY})
    assert "data subject" in shown.stdout and "customer-42" in shown.stdout
    as_json = cli("sessions", "show", sid, "--db", str(path), "--json",
                  env={"CONVOY_MASTER_KEY": KEY})
    assert json.loads(as_json.stdout)["subject"] == "customer-42"


def test_another_process_opens_a_readers_copy_by_its_label(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The label a sealed value names its key by is mapped back to the subject through the
    store, not this process's memory: a fresh process (the real command line) opens the
    copy another session keeps of the subject's data, and its spans."""
    path = tmp_path / "convoy.db"

    async def run() -> str:
        async with engine(path, interceptors=[tracing()]) as eng:
            assert (await eng.run(note_subject, SHARED_NAME, subject="zed")).ok
            copy = await eng.run(copy_note, False)
            assert copy.ok
            return copy.id

    sid = asyncio.run(run())
    monkeypatch.setenv("CONVOY_MASTER_KEY", KEY)
    shown = subprocess_cli(tmp_path, "sessions", "show", sid, "--db", str(path), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["output"] == f"copied {SHARED_NAME}"
    traced = subprocess_cli(tmp_path, "trace", sid, "--db", str(path), "--json")
    assert traced.returncode == 0, traced.stderr
    assert "invoke_workflow privacy.copy" in {s["name"] for s in json.loads(traced.stdout)}


@convoy.workflow(name="privacy.two-questions")
async def two_questions(ctx: convoy.Context, x: str) -> str:
    a = await ctx.ask_human(f"first about {x}?", str, queue="q")
    b = await ctx.ask_human(f"second about {x}?", str, queue="q")
    return a.value + b.value


async def test_only_the_sealed_task_a_session_waits_for_counts_as_open(
        tmp_path: Path) -> None:
    """Without the master key a sealed task's status cannot be read: of a waiting
    session's sealed tasks, only the one it waits for is reported open (not the ones
    already answered)."""
    db = tmp_path / "convoy.db"
    async with engine(db, workflows=[two_questions]) as eng:
        await eng.run(two_questions, IN_NAME, subject="c-1")
        [first] = await eng.inbox.tasks()
        await eng.inbox.answer(first.id, "yes", by="ann")
        await eng.resume()
        [second] = await eng.inbox.tasks()
    async with convoy.Engine(db, workflows=[two_questions]) as locked:  # no master key
        sealed: list[str] = []
        assert await locked.inbox.tasks(sealed=sealed) == []
        assert sealed == [second.id]
        everything: list[str] = []
        await locked.inbox.tasks(status="all", sealed=everything)
        assert sorted(everything) == sorted([first.id, second.id])


def test_convoy_trace_of_a_subjects_derived_spans_says_what_is_sealed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans derived from the journal (the default) of a data subject's session: without
    the master key the waterfall still shows the steps, and one line on stderr says that
    their results (model names, tokens) are sealed and how to read them; with the key, the
    model span is named after its model."""
    path = tmp_path / "convoy.db"

    async def run() -> str:
        async with engine(path, interceptors=[Tracing(["store"])]) as eng:
            return (await eng.run(serve, {"name": IN_NAME}, subject="customer-42")).id

    sid = asyncio.run(run())
    monkeypatch.delenv("CONVOY_MASTER_KEY", raising=False)
    monkeypatch.delenv("CONVOY_MASTER_KEY_FILE", raising=False)
    locked = cli("trace", sid, "--db", str(path), "--json")
    assert locked.code == 0, locked.stderr
    [note] = locked.stderr.strip().splitlines()
    assert "sealed" in note and "CONVOY_MASTER_KEY_FILE" in note, note
    assert "invoke_workflow privacy.serve" in {s["name"] for s in json.loads(locked.stdout)}
    opened = cli("trace", sid, "--db", str(path), "--json", env={"CONVOY_MASTER_KEY": KEY})
    assert opened.code == 0, opened.stderr
    assert "sealed" not in opened.stderr
    names = {s["name"] for s in json.loads(opened.stdout)}
    assert any(n.startswith("chat ") for n in names), names
    assert IN_NAME not in opened.stdout


def test_convoy_trace_of_a_subjects_decided_session_without_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans derived when read, and a person's decision kept as a sealed span (decided
    through the engine's inbox): without the master key, the waterfall of what can be
    read and one line, not a refusal (review s29)."""
    path = tmp_path / "convoy.db"
    note = "Spoke to Ingrid on +44 20 7946 0958"

    async def run() -> str:
        async with engine(path, interceptors=[Tracing(["store"])]) as eng:
            res = await eng.run(ask_refund, IN_NAME, subject="customer-42")
            [task] = await eng.inbox.tasks()
            await eng.inbox.answer(task.id, {"approve": True, "note": note}, by="alice")
            assert (await eng.resume())[0].ok
            return res.id

    sid = asyncio.run(run())
    monkeypatch.delenv("CONVOY_MASTER_KEY", raising=False)
    monkeypatch.delenv("CONVOY_MASTER_KEY_FILE", raising=False)
    for args in ((), ("--json",)):
        locked = cli("trace", sid, "--db", str(path), *args)
        assert locked.code == 0, locked.stderr
        assert "invoke_workflow" in locked.stdout
        assert note not in locked.stdout and IN_NAME not in locked.stdout
        [line] = locked.stderr.strip().splitlines()
        assert "sealed" in line and "CONVOY_MASTER_KEY_FILE" in line, line
    opened = cli("trace", sid, "--db", str(path), env={"CONVOY_MASTER_KEY": KEY})
    assert opened.code == 0 and opened.stderr == "", opened.stderr
    assert "human_decision" in opened.stdout


def test_a_derived_trace_read_without_the_master_key_says_a_sealed_error_is_sealed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error of a step and of a session that holds a data subject's data is sealed
    with it: read without the key, its kind is 'sealed' (it was 'unknown' and 'failed',
    as if Convoy could not tell); with the key, its kind."""
    path = tmp_path / "convoy.db"
    sid = _lost_race(path, monkeypatch)

    def kinds(env: dict[str, str] | None) -> dict[str, str]:
        res = cli("trace", sid, "--db", str(path), "--json", env=env)
        assert res.code == 0, res.stderr
        return {s["name"]: s["attrs"]["error.type"] for s in json.loads(res.stdout)
                if "error.type" in s["attrs"]}

    locked = kinds(None)
    assert locked and set(locked.values()) == {"sealed"}, locked
    assert set(kinds({"CONVOY_MASTER_KEY": KEY}).values()) == {"conflict"}
    shown = cli("trace", sid, "--db", str(path))
    assert "sealed" in shown.stdout and "unknown" not in shown.stdout, shown.stdout
    [note] = shown.stderr.strip().splitlines()
    assert "its error unread (its kind shown as 'sealed')" in note, note
    assert "results of" in note and "model call" not in note, note  # (no model call)
    assert not cli("trace", sid, "--db", str(path), env={"CONVOY_MASTER_KEY": KEY}).stderr
