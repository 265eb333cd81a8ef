"""Convoy implementation of the peer workloads W1-W3 (shared/bench/WORKLOADS.md).

Same CLI and JSON output as the peers: it imports the peers' shared harness
`common.py` (found at `<repo>/../shared/bench/peers`, or `$CONVOY_PEERS_DIR`) and ends
with `common.main("convoy", ...)`:

    .venv/bin/python bench/convoy_peer.py --workload W1|W2|W3 --sessions N [--warmup 20]

Idiom: typed `convoy.Agent`s and one `@convoy.workflow` per workload, defined once per
process; one `convoy.Engine` per process, created and opened before timing. A session is
`await engine.run(workflow, task_text(i))` and returns `result.output` (a session that
does not end `completed` raises, so the harness counts it as an error).

* W1/W2: `convoy.pipeline(ctx, [agent0..agent4], ticket)`; agent0 takes the ticket text
  (`input_type=str`), agents 1-4 take the previous agent's `Classification`
  (`input_type=Classification`); every agent has `output_type=Classification`.
* W3: `convoy.supervisor(ctx, supervisor, workers, ticket)`: a supervisor `Agent` with
  `workers=[billing, technical, refunds]` (worker agents: `input_type=str`,
  `output_type=WorkerResult`) and `output_type=SupervisorReport`. A worker delegation is
  a tool call to the worker's name; the worker's typed output comes back to the
  supervisor as the tool result, and control returns to the supervisor.

The fake model is a `convoy.Model` subclass (one instance per role) whose `request()`
awaits `common.fake_model_call()` exactly once and returns a `convoy.ModelResponse` in
Convoy's structured-output wire form: assistant `text` holding the canned JSON, usage
(50 in, 10 out). The supervisor's fake answers, when k = number of `role == "tool"`
messages in `request.messages` is < 3, with a single `ToolCall` to `WORKERS[k]` with
arguments `{"task": "handle your part of the ticket"}`, and with the REPORT JSON once
k == 3. No shared script state.

Durability: journaling is ON, in a real SQLite file store in a fresh temp directory
(`$CONVOY_BENCH_DB_DIR` or the system temp dir; removed when the run is over), with the
engine's default durability `"process"` (WAL, `synchronous=NORMAL`: a committed record
survives a crash of the process, not a power loss). `CONVOY_BENCH_DB=postgresql://...`
runs on that PostgreSQL database instead (`bench/postgres.py` does), whose commits are as
durable as the server's settings make them (by default `synchronous_commit=on`, fsync).
Every model step is committed to the journal (group commit) before the session continues,
and session rows are written at start and finish. Override with `CONVOY_DURABILITY=power`
(`synchronous=FULL`, fsync per commit batch on a dedicated thread) for comparison runs.

W2 runs all N sessions truly concurrently: `Engine(concurrency=...)` is set to at least
N + warm-up, so no session waits for admission.

Convoy has no tracing/telemetry that exports over the network; its local bookkeeping
(step timings, usage/cost accounting, loop detection, limits) stays on at defaults.
No GC tuning, no uvloop.

Extra output fields (besides the harness's): `durability`, `store_commits`,
`store_records`, `commits_per_session` and `records_per_session` (totals over warm-up +
measured sessions, divided by their number) and `db_mb` (SQLite file + WAL at the end).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
_PEERS = Path(os.environ.get("CONVOY_PEERS_DIR") or (_REPO.parent / "shared" / "bench" / "peers"))
if not (_PEERS / "common.py").is_file():
    sys.exit(f"convoy_peer: no common.py in {_PEERS} (set CONVOY_PEERS_DIR)")
sys.path.insert(0, str(_PEERS))

import common  # noqa: E402,I001  (first import after the path: starts the import/setup clock)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import convoy  # noqa: E402
from common import (  # noqa: E402
    CHAIN_LEN, CLASSIFICATION, REPORT, USAGE_IN, USAGE_OUT, WORKERS, Classification,
    SupervisorReport, WorkerResult, fake_model_call, supervisor_decision, task_text,
    worker_output)

# ------------------------------------------------------------------ fake model --

_TASK_ARGS = json.dumps({"task": "handle your part of the ticket"})


class FakeModel(convoy.Model):
    """No-network model; ``role`` selects its canned answer (no shared state)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.name = f"local:fake-{role.replace(':', '-')}"   # local:* is priced at 0
        if role.startswith("worker:"):
            self.text = json.dumps(worker_output(role[len("worker:"):]))
        elif role == "supervisor":
            self.text = json.dumps(REPORT)
        else:
            self.text = json.dumps(CLASSIFICATION)

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        await fake_model_call()
        usage = convoy.Usage(USAGE_IN, USAGE_OUT)
        if self.role == "supervisor":
            k = sum(1 for m in request.messages if m.role == "tool")
            w = supervisor_decision(k)
            if w is not None:
                return convoy.ModelResponse(
                    tool_calls=[convoy.ToolCall(f"call_{k}", name=w, arguments=_TASK_ARGS)],
                    usage=usage, model=self.name, finish_reason="tool_calls")
        return convoy.ModelResponse(text=self.text, usage=usage, model=self.name,
                                    finish_reason="stop")


# ------------------------------------------------------------------ W1 / W2 --

# CONVOY_BENCH_GUARDED=1: the people-and-privilege features configured but never
# triggered (every agent granted scopes, every agent run under escalation rules), to
# show they cost nothing on the hot path.
_GUARDED = os.environ.get("CONVOY_BENCH_GUARDED") == "1"
_AGENT_KW: dict[str, object] = {"scopes": ["tickets:*"]} if _GUARDED else {}
_ENGINE_KW: dict[str, object] = {"escalation": convoy.Escalation()} if _GUARDED else {}

chain_model = FakeModel("chain")
chain_agents = [
    convoy.Agent(name=f"agent{k}",
                 instructions=f"You are agent {k} of {CHAIN_LEN}. Classify the ticket.",
                 input_type=str if k == 0 else Classification, output_type=Classification,
                 model=chain_model, **_AGENT_KW)
    for k in range(CHAIN_LEN)
]


@convoy.workflow(name="bench:chain5")
async def chain5(ctx: convoy.Context, ticket: str) -> Classification:
    return await convoy.pipeline(ctx, chain_agents, ticket)


# ----------------------------------------------------------------------- W3 --

workers = [convoy.Agent(name=w, instructions=f"You are the {w} worker.", input_type=str,
                        output_type=WorkerResult, model=FakeModel(f"worker:{w}"), **_AGENT_KW)
           for w in WORKERS]
supervisor_agent = convoy.Agent(
    name="supervisor", instructions="You are a supervisor. Delegate to workers, then report.",
    input_type=str, output_type=SupervisorReport, model=FakeModel("supervisor"),
    workers=workers, **_AGENT_KW)


@convoy.workflow(name="bench:supervisor")
async def supervise(ctx: convoy.Context, ticket: str) -> SupervisorReport:
    return await convoy.supervisor(ctx, supervisor_agent, workers, ticket)


# ------------------------------------------------------------------- engine --

def _planned_sessions() -> int:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--sessions", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=20)
    a, _ = ap.parse_known_args()
    return a.sessions + a.warmup


_DURABILITY = os.environ.get("CONVOY_DURABILITY", "process")
_DB_DIR = Path(tempfile.mkdtemp(prefix="convoy-bench-", dir=os.environ.get("CONVOY_BENCH_DB_DIR")))
_PG = os.environ.get("CONVOY_BENCH_DB", "")
_DB = _PG if convoy.stores.is_postgres_url(_PG) else _DB_DIR / "convoy.db"
_STORE = "PostgreSQL" if _PG else f"SQLite file store, durability={_DURABILITY}"
# Every session of a W2 burst is admitted at once: concurrency >= sessions + warm-up.
engine = convoy.Engine(_DB, durability=_DURABILITY,  # type: ignore[arg-type]
                       concurrency=max(1000, _planned_sessions()),
                       workflows=[chain5, supervise], **_ENGINE_KW)


async def _run(wf: convoy.Workflow, i: int):
    res = await engine.run(wf, task_text(i))
    if not res.ok:
        raise RuntimeError(f"session {res.id} ended {res.status}: {res.error}")
    return res.output


async def chain_session(i: int) -> Classification:
    return await _run(chain5, i)


async def supervisor_session(i: int) -> SupervisorReport:
    return await _run(supervise, i)


# ----------------------------------------------- store statistics in the JSON --

def _db_mb() -> float | None:
    if _PG:
        return None
    return round(sum(p.stat().st_size for p in _DB_DIR.glob("convoy.db*")) / 2**20, 2)


def _with_store_stats(measure):
    """Wrap the harness's measuring coroutine (in this process only) to add the store's
    commit counts to its result and remove the temp store afterwards."""

    async def wrapped(workload, sess, n, warmup, *rest):
        c0, r0 = engine.store.commits, engine.store.records
        try:
            out = await measure(workload, sess, n, warmup, *rest)
        except BaseException:
            shutil.rmtree(_DB_DIR, ignore_errors=True)
            raise
        res = out[0] if isinstance(out, tuple) else out
        started = n + warmup
        commits = engine.store.commits - c0
        records = engine.store.records - r0
        res.update(store=_STORE, durability=_DURABILITY, store_commits=commits,
                   store_records=records,
                   commits_per_session=round(commits / started, 3),
                   records_per_session=round(records / started, 3), db_mb=_db_mb())
        shutil.rmtree(_DB_DIR, ignore_errors=True)   # the open connection keeps its fds
        return out

    return wrapped


common._sequential = _with_store_stats(common._sequential)
common._concurrent = _with_store_stats(common._concurrent)


if __name__ == "__main__":
    common.main("convoy", ["convoy", "pydantic"], chain_session, supervisor_session,
                notes=f"journal on: {_STORE}")
