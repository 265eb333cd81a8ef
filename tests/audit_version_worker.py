"""An engine process of the multi-process ``config_change`` test
(``tests/test_audit_versions_procs.py``): one engine with the audit log on a store other
processes share, that runs one session of a workflow at the version it is given once the
test says go, so every process sees the new version at about the same moment.

usage: python audit_version_worker.py DB VERSION GATE INDEX

``DB`` is a SQLite path or a ``postgresql://`` URL. Once its engine is open the worker
creates ``GATE/ready-INDEX`` and waits for ``GATE/go`` (polling the file: no timing); then
it runs its session (tenant ``acme``), closes the engine (which seals the log) and exits 0.
Its clock is a fixed instant (never today's date).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import convoy
from convoy.audit import AuditInterceptor
from convoy.stores import store_from_url

T0 = 1_800_000_000.0


async def main(db: str, version: str, gate: Path, index: str) -> None:
    @convoy.workflow(name="audit.deployed", version=version)
    async def deployed(ctx: convoy.Context, text: str) -> str:
        async def echo() -> str:
            return text

        return await ctx.step("echo", echo)  # (an entry of the session's own)

    engine = convoy.Engine(store_from_url(db, clock=lambda: T0),
                           interceptors=[AuditInterceptor()])
    await engine.open()
    try:
        (gate / f"ready-{index}").touch()
        go = gate / "go"
        deadline = time.monotonic() + 120  # (a safety stop only: the test says go)
        while not go.exists():
            if time.monotonic() > deadline:
                raise SystemExit("audit_version_worker: no go from the test in 120 s")
            await asyncio.sleep(0.001)
        result = await engine.tenant("acme").run(deployed, index)
        if not result.ok:
            raise SystemExit(f"audit_version_worker: the session ended {result.status}: "
                             f"{result.error}")
    finally:
        await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]))
