"""Commands that only read a store open it read-only: they never create, migrate or add to
it. A store without an add-on reads as if that feature had nothing there; a store at an
older schema version gets one line saying how to migrate it; both are left exactly as
they were (schema, ``meta`` rows, and on SQLite the file's bytes). On both stores."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import convoy
from convoy import StoreError
from convoy.cli._common import Scope
from convoy.cli._metrics import StoreCollector
from convoy.stores import SCHEMA_VERSION, store_from_url
from tests.clikit import (
    FLOW,
    GOOD,
    Res,
    cli,
    ids_of,
    one_line_error,
    subprocess_cli,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)
from tests.store_backends import Backend, FakeClock, SQLiteBackend
from tests.test_cli_db import at_version_4, backend, url  # noqa: F401  (the fixture)


def _master_key(tmp_path: Path) -> dict[str, str]:
    assert cli("keygen", str(tmp_path / "m.key")).code == 0
    return {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}


def populate(db: str) -> str:
    """Sessions with traces, shared state and a human task waiting (tenant acme, task
    ``r1:0``); the id of a finished session of the default tenant."""
    import hitl_flows

    write_jsonl(Path("in.jsonl"), GOOD)
    res = cli("run", FLOW, "-i", "in.jsonl", "--db", db, "--trace", "store")
    assert res.code == 0, res.stderr
    assert cli("state", "set", "customer:1", "credit", "10", "--db", db).code == 0

    async def waiting() -> None:
        async with convoy.Engine(db) as eng:
            res = await eng.tenant("acme").run(hitl_flows.refund, "c-7", session_id="r1")
            assert res.status == "waiting", res

    asyncio.run(waiting())
    return ids_of(GOOD[:1])[0]


def reads(sid: str) -> list[tuple[list[str], int]]:
    """Every command that only reads a store (without its ``--db``), with its exit code."""
    return [
        (["sessions", "list", "--all-tenants"], 0),
        (["sessions", "show", sid], 0),
        (["sessions", "show", sid, "--json"], 0),
        (["trace", sid], 0),
        (["trace", sid, "--json"], 0),
        (["cost"], 0),
        (["cost", "--by", "tenant", "--all-tenants"], 0),
        (["alerts", "--all-tenants"], 0),
        (["db", "info"], 0),
        (["db", "info", "--json"], 0),
        (["inbox", "list", "--tenant", "acme"], 0),
        (["inbox", "show", "r1:0", "--tenant", "acme"], 0),
        (["state", "get", "customer:1", "credit"], 0),
        (["state", "history", "customer:1", "credit"], 0),
        (["state", "list"], 0),
        (["audit", "verify"], 0),
        (["audit", "list"], 2),  # no log yet: one line saying so
        (["replay", sid], 0),
        (["export", "c-9"], 2),  # an unknown subject
        (["retry", "--status", "failed", "--dry-run", "--all-tenants"], 0),
        (["retry", sid, "--dry-run"], 2),  # completed: not a session a retry runs
        (["purge", "--older-than", "1s", "--dry-run", "--all-tenants"], 0),
    ]


def scrape(db: str) -> list[object]:
    """What ``convoy metrics serve`` reads at a scrape."""
    return list(StoreCollector(db, Scope(None)).collect())


def test_read_only_commands_leave_a_store_without_its_addons_as_it_was(
        backend: Backend, tmp_path: Path) -> None:  # noqa: F811
    db = url(backend)
    env = _master_key(tmp_path)
    sid = populate(db)
    backend.drop_addons()
    before = backend.snapshot()
    for args, code in reads(sid):
        res = cli(*args, "--db", db, env=env)
        assert res.code == code, (args, res.stdout, res.stderr)
        assert backend.snapshot() == before, f"'convoy {' '.join(args)}' changed the store"
    assert scrape(db)
    assert backend.snapshot() == before, "'convoy metrics serve' changed the store"
    # A command that writes still brings the store up to date, and says what it added.
    res = cli("db", "migrate", "--db", db)
    assert res.code == 0, res.stderr
    assert res.stdout.strip().endswith(f"at store schema {SCHEMA_VERSION}; added add-ons "
                                       "agent_config, alerts, subjects, step_began, "
                                       "alert_keys, alerts_open_once, alert_outbox_order, "
                                       "private_statistics, audit_cursor_reset, "
                                       "state_floor, state_orphans"), res.stdout
    assert "already" in cli("db", "migrate", "--db", db).stdout
    assert backend.snapshot() != before


def test_a_feature_whose_addon_is_missing_reads_as_nothing_there(backend: Backend) -> None:  # noqa: F811
    db = url(backend)
    sid = populate(db)
    backend.drop_addons()
    res = cli("alerts", "--all-tenants", "--db", db)
    assert res.code == 0 and "no alerts" in res.stdout, res.stderr
    shown = json.loads(cli("sessions", "show", sid, "--json", "--db", db).stdout)
    assert shown["journal"] and all(r["config"] is None for r in shown["journal"])
    assert shown["agent_configs"] == {}
    info = json.loads(cli("db", "info", "--json", "--db", db).stdout)
    assert info["addons_missing"] == ["agent_config", "alerts", "subjects", "step_began",
                                      "alert_keys", "alerts_open_once",
                                      "alert_outbox_order", "private_statistics",
                                      "audit_cursor_reset", "state_floor",
                                      "state_orphans"]
    assert info["sessions"] == {"completed": 3, "waiting": 1}
    text = cli("db", "info", "--db", db).stdout
    # (the command to run names the store, as --db did)
    assert "missing agent_config, alerts, subjects, step_began, alert_keys, alerts_open_once, " \
        "alert_outbox_order, private_statistics, audit_cursor_reset, state_floor, " \
        "state_orphans ('convoy " \
        "db migrate " \
        "--db " in text
    assert "' adds them" in text
    assert cli("db", "migrate", "--db", db).code == 0
    assert json.loads(cli("db", "info", "--json", "--db", db).stdout)["addons_missing"] == []


def test_read_only_commands_on_an_older_schema_say_to_migrate(
        backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: F811
    db = url(backend)
    env = _master_key(tmp_path)
    at_version_4(backend, monkeypatch)
    before = backend.snapshot()
    told = (f"is at store schema 4; this Convoy reads {SCHEMA_VERSION}: run 'convoy db "
            f"migrate --db ")  # (in the message's quotes, the store in a shell's)
    for args, _ in reads("s-1"):
        if args[:2] == ["db", "info"]:
            continue  # it reports the version (tests/test_cli_db.py)
        one_line_error(cli(*args, "--db", db, env=env), 1, told)
        assert backend.snapshot() == before, f"'convoy {' '.join(args)}' changed the store"
    # a scrape of it: the store is down for metrics (convoy_store_up 0), said once on
    # stderr with the same advice
    [up] = scrape(db)
    assert (up.name, [x.value for x in up.samples]) == ("convoy_store_up", [0])  # type: ignore[attr-defined]
    # A real process (a timeout, not a hang, if it served a store it cannot read).
    served = subprocess_cli(Path.cwd(), "metrics", "serve", "--db", db, "--port", "0")
    one_line_error(Res(served.returncode, served.stdout, served.stderr), 1, told)
    assert asyncio.run(store_from_url(db).schema_version()) == 4


def test_read_only_commands_refuse_a_newer_store(backend: Backend) -> None:  # noqa: F811
    db = url(backend)
    assert cli("db", "migrate", "--db", db).code == 0
    backend.set_schema_version(SCHEMA_VERSION + 1)
    for args in (["sessions", "list"], ["alerts"], ["inbox", "list"], ["state", "list"]):
        one_line_error(cli(*args, "--db", db), 1,
                       f"store schema version {SCHEMA_VERSION + 1}, newer than the version "
                       f"{SCHEMA_VERSION} this Convoy reads")


def test_a_read_only_command_creates_no_store(backend: Backend) -> None:  # noqa: F811
    if isinstance(backend, SQLiteBackend):
        backend.path.touch()  # an empty file: a SQLite database without any table
    db = url(backend)
    told = "is an empty file" if isinstance(backend, SQLiteBackend) else "no Convoy store at"
    for args in (["sessions", "list"], ["alerts"], ["state", "list"]):
        one_line_error(cli(*args, "--db", db), 2, told)
    assert asyncio.run(store_from_url(db).schema_version()) is None
    if isinstance(backend, SQLiteBackend):
        assert backend.path.stat().st_size == 0


async def test_a_read_only_store_refuses_to_write(backend: Backend) -> None:  # noqa: F811
    store = backend.new(FakeClock())
    await store.open()
    await store.aclose()
    ro = backend.new(FakeClock(), read_only=True)
    assert ro.read_only
    await ro.open()
    try:
        assert await ro.kv_get("n", "k") is None
        with pytest.raises(StoreError, match="read-only"):
            await ro.kv_put("n", "k", "v")
    finally:
        await ro.aclose()


@pytest.mark.parametrize("command", [("export", "s"), ("inbox", "list"), ("inbox", "show")])
def test_busy_timeout_help_of_a_command_that_only_reads_speaks_of_opening(
        command: tuple[str, ...]) -> None:
    """A command that only reads has no write to wait for: its ``--busy-timeout`` says
    what the wait is for (opening the store), where one that writes speaks of its writes."""
    def help_of(*args: str) -> str:
        res = cli(*args, "--help")
        assert res.code == 0, res.output
        return " ".join(res.stdout.replace("│", " ").split())

    text = help_of(*command[:2] if command[0] == "inbox" else command[:1])
    assert "How long opening the store may wait" in text, text
    assert "a write" not in text, text
    sessions = "the sessions it was writing stay unfinished"
    assert sessions in help_of("resume")
    for writes in (["erase"], ["purge"], ["state", "set"], ["inbox", "answer"], ["db", "migrate"],
                   ["audit", "seal"], ["signal"]):  # (they write no session)
        text = help_of(*writes)
        assert "How long a write may find the store locked" in text, (writes, text)
        assert sessions not in text, (writes, text)


def test_no_line_a_command_prints_ends_in_spaces(tmp_path: Path) -> None:
    """Tables (``sessions show``, ``db info``, ``trace``, ...) pad their last column: a line
    copied, diffed or grepped from the output carries no trailing spaces."""
    db = str(tmp_path / "convoy.db")
    env = _master_key(tmp_path)
    sid = populate(db)
    for args, code in reads(sid):
        res = cli(*args, "--db", db, env=env)
        assert res.code == code, (args, res.stdout, res.stderr)
        for name, text in (("stdout", res.stdout), ("stderr", res.stderr)):
            padded = [line for line in text.split("\n") if line.endswith(" ")]
            assert not padded, (args, name, padded[:3])


def test_a_one_line_notice_stays_one_line_when_piped(tmp_path: Path) -> None:
    """Output piped or captured is not word-wrapped at 120 columns: a notice that names a
    store deep in directories is one line (grep finds it whole), as errors are."""
    deep = tmp_path / ("a_rather_long_directory_name_for_the_store" * 2) / "and_another_level"
    deep.mkdir(parents=True)
    db = str(deep / "store.db")
    assert cli("db", "migrate", "--db", db).code == 0
    for args in (["sessions", "list"], ["sessions", "list", "--status", "failed"], ["cost"],
                 ["alerts", "--open"]):
        res = cli(*args, "--db", db)
        assert res.code == 0, (args, res.stderr)
        lines = [line for line in res.stdout.splitlines() if line]
        assert len(lines) == 1 and db in lines[0], (args, res.stdout)


@pytest.mark.parametrize(("args", "what"), [
    (["trace", ""], "the session id"), (["sessions", "show", " "], "the session id"),
    (["replay", ""], "the session id"), (["cancel", ""], "the session id"),
    (["signal", "", "go"], "the session id"), (["export", ""], "the subject"),
    (["erase", "  "], "the subject"), (["inbox", "show", ""], "the task id"),
    (["inbox", "approve", ""], "the task id"), (["retry", "", "--dry-run"], "the session id")])
def test_an_empty_id_is_said_to_be_empty(tmp_path: Path, args: list[str], what: str) -> None:
    """An empty id (a shell variable that was not set) is named as empty, in one line,
    before the store is read: not an unknown id to look up."""
    db = str(tmp_path / "other.db")
    populate(db)
    res = cli(*args, "--db", db, "--tenant", "acme", env=_master_key(tmp_path))
    one_line_error(res, 2, f"{what} is empty")
    # the command it suggests to find one reads the same store and tenant
    assert f"--db {db} --tenant acme'" in res.stderr, res.stderr
