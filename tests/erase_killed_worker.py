"""A process that erases a data subject (``erase``) or purges by age (``purge``) and is
SIGKILLed by tests/test_erase_killed.py right after the store committed the purge: it
creates the file ``READY`` there and waits to be killed.

usage: python erase_killed_worker.py DB erase|purge READY

``CONVOY_MASTER_KEY``: the master key; ``KILLED_CLOCK``: a file holding the time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import convoy
from convoy.audit import AuditInterceptor
from convoy.stores import store_from_url


def hold(ready: Path) -> None:
    ready.touch()
    while True:
        time.sleep(1)  # (killed here by the test: no test waits on this)


async def main(db: str, mode: str, ready: Path) -> None:
    clock = Path(os.environ["KILLED_CLOCK"])
    store = store_from_url(db, clock=lambda: float(clock.read_text()))
    async with convoy.Engine(store, master_key=convoy.MasterKey.from_env(),
                             interceptors=[AuditInterceptor()]) as engine:
        plain: Any = engine.keys.store  # type: ignore[union-attr]
        purge = plain.purge

        async def purged_then_killed(*args: Any, **kw: Any) -> Any:
            await purge(*args, **kw)
            await asyncio.to_thread(hold, ready)

        plain.purge = purged_then_killed
        if mode == "erase":
            await engine.erase("s-1", by="dpo")
        else:
            await engine.purge(30 * 86400, by="dpo")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
