"""``convoy cost``: the report read from the journal agrees with the sessions table."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import convoy
from convoy.cli._render import fmt_cost


class Note(BaseModel):
    text: str


SIM = convoy.SimModel(seed=3, name="sim:cost")
TRIAGE = convoy.Agent(name="triage", output_type=Note, model=SIM)
WRITER = convoy.Agent(name="writer", input_type=Note, output_type=Note, model=SIM)


@convoy.workflow(name="cost_cli:flow")
async def flow(ctx: convoy.Context, text: str) -> Note:
    out: Note = await convoy.pipeline(ctx, [TRIAGE, WRITER], text)
    return out


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("CONVOY_DB", None)
    return subprocess.run([sys.executable, "-m", "convoy.cli", "cost", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


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
    with sqlite3.connect(db) as conn:
        i, o, c, n = conn.execute("SELECT SUM(input_tokens), SUM(output_tokens), SUM(cost), "
                                  "COUNT(*) FROM sessions").fetchone()
    return int(i), int(o), float(c), int(n)


def test_by_agent_rows_and_totals_match_the_sessions(store: Path) -> None:
    res = cli("--db", str(store), "--by", "agent")
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
    by_tenant = rows(cli("--db", str(store), "--by", "tenant").stdout)
    assert by_tenant["acme"][0] == "10" and by_tenant["globex"][0] == "4"
    # the longer tickets cost more per session, so globex's two sessions come first
    res = cli("--db", str(store), "--by", "session", "--limit", "2")
    assert "showing 2 of 7 sessions" in res.stdout
    assert len([k for k in rows(res.stdout) if k not in ("session", "total")]) == 2
    by_model = rows(cli("--db", str(store), "-b", "model").stdout)
    assert by_model["sim:cost"][0] == "14"


def test_usage_errors(tmp_path: Path, store: Path) -> None:
    bad = cli("--db", str(store), "--by", "colour")
    assert bad.returncode == 2 and "use one of session, agent, model, tenant" in bad.stderr
    missing = cli("--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no Convoy store" in missing.stderr
