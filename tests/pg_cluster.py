"""The private PostgreSQL cluster the tests run against (``scripts/postgres.sh``).

Started once per test process on first use (a test, or a conformance backend built inside
a hypothesis example, which cannot take fixtures), on loopback under a temporary directory,
and stopped when the test session ends. Each test gets a fresh schema (:func:`fresh_schema`) or a
fresh database (:func:`fresh_database`) on it.

The tests SIGKILL engine processes, never the server, and what they check is that an
acknowledged write was committed: whether a commit also survives a crash of the server is
PostgreSQL's own durability. So this cluster runs with ``fsync=off`` and
``synchronous_commit=off``, which makes its schema creations and commits several times
faster; the benchmarks (``bench/postgres.py``) keep the durable defaults.

Missing server binaries fail the tests that need PostgreSQL, with the command that installs
them: PostgreSQL is part of what the project tests, not optional. Only ``CONVOY_SKIP_POSTGRES=1``
turns those tests into skips, explicitly.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "postgres.sh"
SKIP_ENV = "CONVOY_SKIP_POSTGRES"

#: Server options of the test cluster (see the module docstring).
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"

#: "url" and "dir" once the cluster runs, or "failure" if it could not start (tried once).
_state: dict[str, str] = {}


def _start() -> str:
    found = subprocess.run(["bash", str(SCRIPT), "bindir"], capture_output=True, text=True,
                           check=False)
    if found.returncode != 0:
        raise RuntimeError(
            "PostgreSQL server binaries not found: the PostgreSQL store tests need a real "
            "server. Install it with 'bash scripts/postgres.sh install' (apt-get install -y "
            f"postgresql; 'make test' does this), or set {SKIP_ENV}=1 to skip them.")
    where = Path(tempfile.mkdtemp(prefix="convoy-pg-"))
    env = {**os.environ, "PG_SERVER_OPTIONS": FAST}
    start = subprocess.run(["bash", str(SCRIPT), "start", str(where)], capture_output=True,
                           text=True, check=False, timeout=120, env=env)
    if start.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        raise RuntimeError(f"the test PostgreSQL cluster did not start:\n{start.stderr}")

    _state["dir"] = str(where)
    atexit.register(stop)  # also when the test process ends without the session fixture
    return start.stdout.strip().splitlines()[-1]


def stop() -> None:
    """Stop the cluster if it runs (the session fixture in ``tests/conftest.py`` does this
    when the test session ends)."""
    where = _state.pop("dir", None)
    if where is None:
        return
    subprocess.run(["bash", str(SCRIPT), "stop", where], capture_output=True, check=False,
                   timeout=120)
    shutil.rmtree(where, ignore_errors=True)


def server_url() -> str:
    """The URL of the running test cluster's ``postgres`` database (started on first call).
    Skips when ``CONVOY_SKIP_POSTGRES=1``; fails the test if the cluster cannot start."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"PostgreSQL tests skipped: {SKIP_ENV}=1")
    if not _state:
        try:
            _state["url"] = _start()
        except RuntimeError as e:
            _state["failure"] = str(e)
    if "failure" in _state:
        pytest.fail(_state["failure"], pytrace=False)
    return _state["url"]


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute("SET lock_timeout = '30s'")  # a store a test left open: fail, not hang
        conn.execute(statement)  # type: ignore[arg-type]


def fresh_schema() -> str:
    """A new, unused schema name (the store creates the schema on open)."""
    return f"t_{uuid.uuid4().hex[:16]}"


def drop_schema(schema: str) -> None:
    _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def fresh_database() -> str:
    """The URL of a new, empty database on the test cluster."""
    name = f"db_{uuid.uuid4().hex[:16]}"
    _admin(f'CREATE DATABASE "{name}"')
    return server_url().rsplit("/", 1)[0] + f"/{name}"


def start_until_it_waits(target: Callable[[], None]) -> threading.Thread:
    """``target`` started on a thread of its own, returned once it is done or a
    transaction on the cluster waits for a lock (one a test's transaction holds, as a
    racing write would), at most 60 s."""
    import psycopg

    thread = threading.Thread(target=target)
    thread.start()
    with psycopg.connect(server_url(), autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while thread.is_alive() and time.monotonic() < deadline:
            waiting = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted"
                                   ).fetchone()
            if waiting and waiting[0]:
                break
            time.sleep(0.01)
    return thread
