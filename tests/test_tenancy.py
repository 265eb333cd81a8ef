"""Tenants cannot see each other.

Two tenants, ``acme`` and ``globex``, each leave a session in every state (completed with
model spend, failed, waiting for a signal, woken by one and runnable, escalated) and some
shared state (one key in a namespace both use, one namespace only acme uses). Then
``globex`` tries, through every public entry point (the Python API of its
:class:`convoy.Tenant`, every CLI command with ``--tenant globex`` or ``CONVOY_TENANT``,
forged session ids, forged tenant names), to read, list, resume, replay, retry, cancel,
signal or answer ``acme``'s sessions and to read or write its state, and finds nothing: a
session of ``acme`` is exactly an unknown id (the same error, word for word), and
``acme``'s sessions, journals, signals and state are unchanged afterwards.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import SessionFilter, SessionRow, SQLiteStore, Store, store_from_url
from tests.clikit import FIXTURES, cli, one_line_error, summary, workdir, write_jsonl  # noqa: F401

from .conftest import STORE_KINDS, store_db


def _flows() -> Any:
    """The fixture workflows under the module name the CLI imports them by
    (``--import tenant_flows``), so the tests and the CLI share one registration."""
    if "tenant_flows" not in sys.modules:
        spec = importlib.util.spec_from_file_location("tenant_flows",
                                                      FIXTURES / "tenant_flows.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["tenant_flows"] = module
        spec.loader.exec_module(module)
    return sys.modules["tenant_flows"]


answer, approval, pay = _flows().answer, _flows().approval, _flows().pay

STATES = ("done", "failed", "waiting", "woken", "escalated")
ACME = [f"acme-{s}" for s in STATES]
#: Ids that look like acme's, or like a query, but are no session at all.
FORGED = ["ACME-DONE", "acme-done ", " acme-done", "acme-done\n", "acme-%", "acme-_one",
          "%", "*", "' OR 1=1 --", "acme-done' OR tenant='acme", "", "acme-done\x00",
          "acme/acme-done", "../acme-done"]
NEVER = "never-existed"
#: Tenant names that must be refused: empty, separators, spaces, control characters,
#: wildcards, too long, not ASCII, not a string.
BAD_TENANTS: list[Any] = ["", " acme", "acme ", "acme/x", "../acme", "acme\\x", "acme\n",
                          "acme\x00", "ac\tme", "acme%", "acme*", "acme:1", "-acme", "acme-",
                          ".acme", "a" * 65, "ácme", "acme\u200b", 42, None]


@pytest.fixture(params=STORE_KINDS, autouse=True)
def store_kind(request: pytest.FixtureRequest, workdir: Path,  # noqa: F811
               monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test runs on SQLite (``convoy.db`` in the test's own directory) and on
    PostgreSQL; the store is ``CONVOY_DB``, for the Python API and the CLI alike."""
    where = store_db(request.param, workdir)
    monkeypatch.setenv("CONVOY_DB", str(next(where)))
    yield request.param
    next(where, None)


def db() -> str:
    """The store of the test (see :func:`store_kind`)."""
    return os.environ["CONVOY_DB"]


async def populate() -> None:
    """Every state, for both tenants, through each tenant's own handle."""
    async with convoy.Engine(db()) as engine:
        for t in ("acme", "globex"):
            h = engine.tenant(t)
            assert (await h.run(answer, {"text": f"{t}: what is my plan?"},
                                session_id=f"{t}-done")).status == "completed"
            assert (await h.run(answer, {"text": "explode"},
                                session_id=f"{t}-failed")).status == "failed"
            assert (await h.run(approval, f"{t} refund",
                                session_id=f"{t}-waiting")).status == "waiting"
            assert (await h.run(approval, f"{t} upgrade",
                                session_id=f"{t}-woken")).status == "waiting"
            await h.signal(f"{t}-woken", "approve", True)
            assert (await h.run(pay, 20.0, session_id=f"{t}-escalated")).status == "escalated"
            await h.state("customer:42").set("credit", len(t), expected_version=0)
        await engine.tenant("acme").state("acme-only").set("k", "secret", expected_version=0)


async def snapshot(store: Store, tenant: str = "acme") -> dict[str, Any]:
    """Everything a tenant has: its rows, journals, unconsumed signals and shared state."""
    rows = await store.list_sessions(SessionFilter(tenant=tenant, limit=10_000))
    found: dict[str, Any] = {
        r.id: (r, await store.journal(r.id), await store.next_signal(r.id, "approve"))
        for r in rows}
    for ns in await store.state_namespaces(tenant):
        found[f"state {ns}"] = [(e, await store.state_history(tenant, ns, e.key))
                                for e in await store.state_list(tenant, ns)]
    return found


def read_snapshot() -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        store = store_from_url(db())
        await store.open()
        try:
            return await snapshot(store)
        finally:
            await store.aclose()

    return asyncio.run(read())


def same_error_as_unknown(message: str, sid: str, unknown: str) -> None:
    """``message`` (about ``sid``) reads exactly like ``unknown`` (about :data:`NEVER`)."""
    assert message.replace(repr(sid), "<id>") == unknown.replace(repr(NEVER), "<id>"), (
        message, unknown)


# -- the Python API of a Tenant --------------------------------------------------------------

Attempt = Callable[[convoy.Tenant, str], Awaitable[Any]]

ATTEMPTS: dict[str, Attempt] = {
    "session": lambda h, sid: h.session(sid),
    "result": lambda h, sid: h.result(sid),
    "journal": lambda h, sid: h.journal(sid),
    "signal": lambda h, sid: h.signal(sid, "approve", True),
    "answer retry": lambda h, sid: h.signal(sid, convoy.ESCALATION, {"action": "retry"}),
    "answer complete": lambda h, sid: h.signal(sid, convoy.ESCALATION,
                                               {"action": "complete", "result": "forged"}),
    "answer fail": lambda h, sid: h.signal(sid, convoy.ESCALATION, {"action": "fail"}),
    "cancel": lambda h, sid: h.cancel(sid),
    "replay": lambda h, sid: h.replay(sid),
    "retry": lambda h, sid: h.retry(sid),
    "retry_many": lambda h, sid: h.retry_many(["globex-failed", sid]),
    "retryable": lambda h, sid: h.retryable(ids=[sid]),
}


async def refused(attempt: Attempt, h: convoy.Tenant, sid: str) -> str:
    with pytest.raises(convoy.UserError) as e:
        await attempt(h, sid)
    return str(e.value)


async def test_a_tenant_reaches_none_of_another_tenants_sessions_through_its_handle() -> None:
    await populate()
    async with convoy.Engine(db(), workflows=[answer, approval, pay]) as engine:
        before = await snapshot(engine.store)
        assert sorted(before) == sorted([*ACME, "state acme-only", "state customer:42"])
        globex = engine.tenant("globex")

        # Shared state: the same namespace and key are globex's own; acme's namespaces are
        # empty through globex, and what globex writes there is globex's.
        assert (await globex.state("customer:42").get("credit")).value == len("globex")
        acme_only = globex.state("acme-only")
        assert not (await acme_only.get("k")).exists
        assert await acme_only.keys() == [] and await acme_only.items() == {}
        assert await acme_only.history("k") == []
        with pytest.raises(convoy.StateConflict):
            await acme_only.set("k", "forged", expected_version=1)
        await acme_only.set("k", "globex's own", expected_version=0)

        for name, attempt in ATTEMPTS.items():
            unknown = await refused(attempt, globex, NEVER)
            assert "no session" in unknown and "'globex'" in unknown, (name, unknown)
            for sid in ACME + FORGED:
                message = await refused(attempt, globex, sid)
                if not sid:  # names no session at all: said so, whatever the store holds
                    assert "is empty: a session id names a session" in message, message
                    assert "no session" not in message and "acme" not in message
                    continue
                same_error_as_unknown(message, sid, unknown)

        # Starting a session under an id acme has: refused, telling nothing but that.
        for sid in ACME:
            for start in (globex.run(answer, {"text": "q"}, session_id=sid),
                          globex.run_many(answer, [{"text": "q"}, {"text": "r"}],
                                          ids=["globex-new", sid])):
                with pytest.raises(convoy.UserError, match="already used") as e:
                    await start
                told = str(e.value).replace(repr(sid), "")
                assert "acme" not in told and "completed" not in told, told
        assert await globex.sessions(workflow=answer.name, status="pending") == []

        # Listings, counts and runs see globex's sessions only.
        listed = {r.id for r in await globex.sessions(limit=1000)}
        assert listed == {f"globex-{s}" for s in STATES}
        for status in ("completed", "failed", "waiting", "pending", "escalated"):
            assert all(r.tenant == "globex" for r in await globex.sessions(status=status))
        assert sum((await globex.counts()).values()) == len(STATES)
        assert {r.id for r in await globex.retryable(status="failed")} == {"globex-failed"}
        resumed = await globex.resume()
        assert {r.id for r in resumed} == {"globex-waiting", "globex-woken"}
        assert (await globex.result("globex-woken")).output == "globex upgrade: approved"
        async with asyncio.timeout(30):
            await globex.serve(until_idle=True, poll_interval=0.05)
        [retried] = await globex.retry_many(["globex-failed"])
        assert retried.id == "globex-failed.r1"
        assert (await globex.session(retried.id)).tenant == "globex"

        assert await snapshot(engine.store) == before
        # acme itself still sees all of it (the handle confines, it does not hide by accident)
        acme = engine.tenant("acme")
        assert (await acme.result("acme-done")).output == "answered"
        assert [r.kind for r in await acme.journal("acme-done")] == ["model"]
        assert (await acme.session("acme-woken")).status == "pending"


async def test_the_operator_view_is_the_engine_and_a_tenant_exposes_no_engine() -> None:
    await populate()
    async with convoy.Engine(db()) as engine:
        assert {r.tenant for r in await engine.sessions(limit=1000)} == {"acme", "globex"}
        assert sum((await engine.counts()).values()) == 2 * len(STATES)
        assert (await engine.session("acme-done")).tenant == "acme"
        assert (await engine.result("globex-done")).output == "answered"
        globex = engine.tenant("globex")
        assert repr(globex) == "Tenant('globex')" and globex.name == "globex"
        for name in dir(globex):
            if not name.startswith("_"):
                value = getattr(globex, name)
                assert not isinstance(value, convoy.Engine | Store), name
                assert getattr(value, "__self__", globex) is globex, name
        # The operator's unknown-id error names no tenant.
        with pytest.raises(convoy.UserError,
                           match=f"^no session 'nope' in {re.escape(engine.store.url)}"):
            await engine.session("nope")


class NetworkedReads(SQLiteStore):
    """A real SQLite store whose session lookups yield to the event loop first, as a
    networked store's (PostgreSQL's, which the test uses as it is) do: two starts of one id
    then both look it up before either creates it."""

    async def get_session(self, session_id: str, *,
                          tenant: str | None = None) -> SessionRow | None:
        await asyncio.sleep(0)
        return await super().get_session(session_id, tenant=tenant)

    async def get_sessions(self, ids: Any, *, tenant: str | None = None,
                           left_out: Any = None) -> dict[str, SessionRow]:
        await asyncio.sleep(0)
        return await super().get_sessions(ids, tenant=tenant, left_out=left_out)


async def test_two_tenants_starting_the_same_session_id_at_once_never_share_it(
        store_kind: str) -> None:
    inputs = {"acme": {"text": "from acme"}, "globex": {"text": "from globex"}}
    store = NetworkedReads(db()) if store_kind == "sqlite" else store_from_url(db())
    async with convoy.Engine(store) as engine:
        acme, globex = engine.tenant("acme"), engine.tenant("globex")
        starts = {
            "run": lambda h, sid: h.run(answer, inputs[h.name], session_id=sid),
            "run_many": lambda h, sid: h.run_many(answer, [inputs[h.name]], ids=[sid]),
        }
        for how, start in starts.items():
            sid = f"race-{how}"
            a, b = await asyncio.gather(start(acme, sid), start(globex, sid),
                                        return_exceptions=True)
            # Which tenant gets there first depends on timing (on PostgreSQL, on the
            # network): exactly one runs it, the other is told the id is taken.
            won, lost = ("acme", b) if not isinstance(a, BaseException) else ("globex", a)
            assert not isinstance(a if won == "acme" else b, BaseException), (a, b)
            assert isinstance(lost, convoy.UserError) and "already used" in str(lost), lost
            row = await engine.session(sid)
            assert row.tenant == won and json.loads(row.input) == inputs[won]
            assert [r.kind for r in await engine.journal(sid)] == ["model"]
            assert (await engine.result(sid)).status == "completed"
            # one tenant starting the same id twice at once runs it once: the other start
            # reports the session as it finds it (running, or already completed when the
            # first run finished before it looked: on PostgreSQL under load it may)
            c, d = await asyncio.gather(start(acme, f"{sid}-again"),
                                        start(acme, f"{sid}-again"))
            statuses = sorted(x.status if isinstance(x, convoy.SessionResult) else x[0].status
                              for x in (c, d))
            assert statuses in (["completed", "running"], ["completed", "completed"]), (c, d)
            assert len(await engine.journal(f"{sid}-again")) == 1
            assert (await engine.result(f"{sid}-again")).status == "completed"


@pytest.mark.parametrize("name", BAD_TENANTS, ids=repr)
async def test_forged_tenant_names_are_refused_with_one_clear_error(name: Any) -> None:
    async with convoy.Engine(db()) as engine:
        for use in (lambda: engine.tenant(name),
                    lambda: engine.state("customer:42", tenant=name),
                    lambda: engine.run(answer, {"text": "q"}, tenant=name),
                    lambda: engine.run_many(answer, [{"text": "q"}], tenant=name)):
            with pytest.raises(convoy.UserError) as e:
                result = use()
                if asyncio.iscoroutine(result):
                    await result
            message = str(e.value)
            assert "\n" not in message and "\x00" not in message
            assert message.startswith(("invalid tenant name", "a tenant name is a string"))
        assert await engine.sessions() == []


async def test_tenant_names_are_exact_a_lookalike_is_another_tenant() -> None:
    await populate()
    async with convoy.Engine(db()) as engine:
        for lookalike in ("ACME", "Acme", "acme.", "acme-", "acme_", "acm"):
            try:
                h = engine.tenant(lookalike)
            except convoy.UserError:
                continue
            assert await h.sessions() == [] and await h.counts() == {}
            assert await h.resume() == []
            with pytest.raises(convoy.UserError, match="no session"):
                await h.session("acme-done")


# -- the CLI -----------------------------------------------------------------------------------


def cli_unknown(*args: str, sid: str, tenant_args: tuple[str, ...] = ("--tenant", "globex"),
                env: dict[str, str] | None = None) -> None:
    """``convoy ARGS`` about ``sid`` fails exactly as about :data:`NEVER`."""
    got = cli(*[sid if a == "{}" else a for a in args], *tenant_args, env=env)
    ref = cli(*[NEVER if a == "{}" else a for a in args], *tenant_args, env=env)
    one_line_error(ref, 2, f"no session {NEVER!r}")
    assert got.code == ref.code, (args, got)
    same_error_as_unknown(got.stderr.strip(), sid, ref.stderr.strip())
    assert got.stdout == ref.stdout == ""


CLI_ATTEMPTS: list[tuple[str, ...]] = [
    ("sessions", "show", "{}"),
    ("sessions", "show", "{}", "--json"),
    ("signal", "{}", "approve", "--payload", "true"),
    ("signal", "{}", "convoy.escalation", "--payload", '{"action": "retry"}'),
    ("signal", "{}", "convoy.escalation", "--payload", '{"action": "complete", "result": 1}'),
    ("signal", "{}", "convoy.escalation", "--payload", '{"action": "fail"}'),
    ("cancel", "{}"),
    ("replay", "{}", "--import", "tenant_flows"),
    ("retry", "{}", "--import", "tenant_flows"),
    ("retry", "{}", "--dry-run"),
]


def test_no_cli_command_with_a_tenant_reaches_another_tenants_sessions() -> None:
    asyncio.run(populate())
    # `convoy run` of the same line by both tenants: two sessions, one each (content ids
    # are per tenant); under an id acme has, the line is skipped, saying only that.
    write_jsonl(Path("in.jsonl"), [{"text": "same question"}])
    for flag, tenant in (("--tenant", "acme"), ("-t", "globex")):
        res = cli("run", "tenant_flows:answer", "-i", "in.jsonl", flag, tenant)
        assert res.code == 0 and summary(res.stdout, "completed") == "1", res.stdout
    write_jsonl(Path("in.jsonl"), [{"id": "acme-done", "text": "x"}])
    res = cli("run", "tenant_flows:answer", "-i", "in.jsonl", "--tenant", "globex",
              "--id-field", "id")
    assert res.code == 0, res.stderr
    assert "already used" in res.stderr and summary(res.stdout, "sessions run") == "0"
    assert "completed" not in res.stderr
    before = read_snapshot()
    printable = [f for f in FORGED if f and "\n" not in f and "\x00" not in f]
    for args in CLI_ATTEMPTS:
        for sid in ACME + printable:
            cli_unknown(*args, sid=sid)
        cli_unknown(*args, sid="acme-done", tenant_args=(),
                    env={"CONVOY_TENANT": "globex"})

    for args in (("state", "get", "{}", "k"), ("state", "history", "{}", "k")):
        got = cli(*[a.replace("{}", "acme-only") for a in args], "--tenant", "globex")
        ref = cli(*[a.replace("{}", "never") for a in args], "--tenant", "globex")
        one_line_error(got, 2, "no state")
        assert got.stderr.replace("acme-only", "never") == ref.stderr
    listed = cli("state", "list", "--tenant", "globex")
    assert "customer:42" in listed.stdout and "acme-only" not in listed.stdout
    assert "secret" not in cli("state", "list", "acme-only", "--tenant", "globex").stdout
    assert cli("state", "get", "customer:42", "credit", "-t", "globex").stdout.startswith("6")

    for args in (("sessions", "list"), ("sessions", "list", "--status", "waiting"),
                 ("sessions", "list", "-w", "tenant_flows:pay"), ("cost", "--by", "session"),
                 ("cost", "--by", "tenant"), ("retry", "--status", "failed", "--dry-run")):
        res = cli(*args, "--tenant", "globex")
        assert res.code == 0, (args, res.stderr)
        assert "globex" in res.stdout and "acme" not in res.stdout + res.stderr, (args, res)
    res = cli("sessions", "list", "-w", "tenant_flows:nothing", "--tenant", "globex")
    assert res.code == 2 and "acme" not in res.stderr

    res = cli("resume", "--tenant", "globex")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "1"  # globex-woken, not acme-woken
    res = cli("worker", "tenant_flows", "--until-idle", "--poll-interval", "0.05",
              "--tenant", "globex")
    assert res.code == 0, res.stderr
    assert "acme" not in res.stdout + res.stderr
    res = cli("retry", "--status", "failed", "--tenant", "globex", "--import", "tenant_flows")
    assert res.code == 0 and summary(res.stdout, "sessions run") == "1", res.stdout

    assert read_snapshot() == before


@pytest.mark.parametrize("name", [n for n in BAD_TENANTS if isinstance(n, str) and n
                                  and "\x00" not in n], ids=repr)
def test_cli_refuses_forged_tenant_names_in_one_line(name: str) -> None:
    asyncio.run(populate())
    for args in (("sessions", "list"), ("sessions", "show", "acme-done"), ("resume",),
                 ("cancel", "acme-waiting"), ("cost",), ("state", "list")):
        one_line_error(cli(*args, "--tenant", name), 2, "invalid tenant name")
        res = cli(*args, env={"CONVOY_TENANT": name})
        one_line_error(res, 2, "CONVOY_TENANT")
    write_jsonl(Path("in.jsonl"), [{"text": "q"}])
    one_line_error(cli("run", "tenant_flows:answer", "-i", "in.jsonl", "--tenant", name), 2,
                   "invalid tenant name")


def test_cli_without_a_tenant_sees_the_default_tenant_and_all_tenants_is_explicit() -> None:
    asyncio.run(populate())
    write_jsonl(Path("in.jsonl"), [{"text": "mine"}])
    assert cli("run", "tenant_flows:answer", "-i", "in.jsonl").code == 0
    listed = cli("sessions", "list")
    assert listed.code == 0 and "acme" not in listed.stdout and "globex" not in listed.stdout
    assert "answer-" in listed.stdout
    everyone = cli("sessions", "list", "--all-tenants")
    assert "acme-done" in everyone.stdout and "globex-done" in everyone.stdout
    assert "tenant" in everyone.stdout.splitlines()[1]
    assert "tenant" not in listed.stdout.splitlines()[1]
    assert cli("sessions", "show", "acme-done", "--all-tenants").code == 0
    one_line_error(cli("sessions", "show", "acme-done"), 2, "of tenant 'default'")
    one_line_error(cli("sessions", "list", "--tenant", "acme", "--all-tenants"), 2,
                   "--all-tenants")
    one_line_error(cli("sessions", "list", "--all-tenants", env={"CONVOY_TENANT": "acme"}),
                   2, "CONVOY_TENANT")
