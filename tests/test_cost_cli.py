"""``convoy cost``: the report read from the journal agrees with the sessions table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import convoy
from convoy.cli import app
from convoy.cli._render import fmt_cost
from convoy.stores import SessionFilter, SQLiteStore


class Note(BaseModel):
    text: str


SIM = convoy.SimModel(seed=3, name="sim:cost")
TRIAGE = convoy.Agent(name="triage", output_type=Note, model=SIM)
WRITER = convoy.Agent(name="writer", input_type=Note, output_type=Note, model=SIM)


@convoy.workflow(name="cost_cli:flow")
async def flow(ctx: convoy.Context, text: str) -> Note:
    out: Note = await convoy.pipeline(ctx, [TRIAGE, WRITER], text)
    return out


class Res:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


def cli(*args: str) -> Res:
    result = CliRunner().invoke(app, ["cost", *args], env={"CONVOY_DB": None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Res(result.exit_code, result.stdout, result.stderr)


def rows(stdout: str) -> dict[str, list[str]]:
    """Table rows by their first cell."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2:
            out[cells[1]] = cells[2:-1]
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("cost") / "convoy.db"

    async def fill() -> None:
        async with convoy.Engine(db) as engine:
            await engine.run_many(flow, [f"ticket number {i}" for i in range(5)], tenant="acme")
            await engine.run_many(flow, ["a much longer ticket " * 20] * 2, tenant="globex")

    asyncio.run(fill())
    return db


def totals(db: Path) -> tuple[int, int, float, int]:
    """Tokens in, out, cost and count of the sessions, as the sessions table has them."""
    async def read() -> tuple[int, int, float, int]:
        store = SQLiteStore(db)
        await store.open()
        try:
            rows = await store.list_sessions(SessionFilter(limit=1000))
        finally:
            await store.aclose()
        return (sum(r.input_tokens for r in rows), sum(r.output_tokens for r in rows),
                sum(r.cost for r in rows), len(rows))

    return asyncio.run(read())


def test_by_agent_rows_and_totals_match_the_sessions(store: Path) -> None:
    res = cli("--db", str(store), "--by", "agent", "--all-tenants")
    assert res.returncode == 0, res.stderr
    table = rows(res.stdout)
    assert {"triage", "writer", "total"} <= set(table)
    tin, tout, tcost, n = totals(store)
    calls, t_in, t_out, cost, cached, share = table["total"]
    assert (calls, t_in, t_out) == (f"{2 * n}", f"{tin:,}", f"{tout:,}")
    assert cost == fmt_cost(tcost) and cached == "0" and share == "100.0%"
    assert table["triage"][0] == table["writer"][0] == str(n)
    shares = [float(table[a][5].rstrip("%")) for a in ("triage", "writer")]
    assert sum(shares) == pytest.approx(100, abs=0.2)


def test_by_tenant_session_and_model(store: Path) -> None:
    by_tenant = rows(cli("--db", str(store), "--by", "tenant", "--all-tenants").stdout)
    assert by_tenant["acme"][0] == "10" and by_tenant["globex"][0] == "4"
    # the longer tickets cost more per session, so globex's two sessions come first
    res = cli("--db", str(store), "--by", "session", "--limit", "2", "--all-tenants")
    assert "showing 2 of 7 sessions" in res.stdout
    assert len([k for k in rows(res.stdout) if k not in ("session", "total")]) == 2
    by_model = rows(cli("--db", str(store), "-b", "model", "--all-tenants").stdout)
    assert by_model["sim:cost"][0] == "14"


def test_one_tenants_report_and_the_default_tenant_by_default(store: Path) -> None:
    acme = rows(cli("--db", str(store), "--by", "tenant", "--tenant", "acme").stdout)
    assert set(acme) == {"acme", "total"} and acme["total"][0] == "10"
    by_session = cli("--db", str(store), "--by", "session", "--tenant", "globex")
    assert "showing" not in by_session.stdout
    assert rows(by_session.stdout)["total"][0] == "4"
    res = cli("--db", str(store))
    assert res.returncode == 0
    assert res.stdout.startswith("no model calls of tenant 'default' in ")
    assert "--all-tenants" in res.stdout


def test_usage_errors(tmp_path: Path, store: Path) -> None:
    bad = cli("--db", str(store), "--by", "colour")
    assert bad.returncode == 2 and "use one of session, agent, model, tenant" in bad.stderr
    missing = cli("--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no Convoy store" in missing.stderr


@pytest.mark.parametrize(("usd", "shown"), [
    (0, "$0"), (1e-7, "<$0.000001"), (4.9e-7, "<$0.000001"), (5e-7, "<$0.000001"),
    (0.0000135, "$0.000013"), (0.00136, "$0.00136"), (0.9999996, "$1.00"), (1.5, "$1.50"),
    (1234.5, "$1,234.50"), (float("nan"), "-")])
def test_a_cost_is_shown_one_way_and_never_as_a_bare_point(usd: float, shown: str) -> None:
    """(``$0.`` for a fraction of a millionth of a dollar, ``$1.`` just under a dollar.)"""
    assert fmt_cost(usd) == shown
