"""Store conformance, shared state: versioned keys, compare-and-set, history, watches.

Part of the store conformance suite (``tests/test_store_conformance.py``, whose fixtures
it uses): every backend of ``tests/store_backends.py`` runs it unchanged. The invariant
under test is *no lost updates*: a compare-and-set lands only on the version its writer
read, whichever store object (process) writes, in whatever order.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convoy.stores._protocol import (
    SessionOutcome,
    StateEntry,
    StateWrite,
    Store,
    joined_wait_names,
)
from tests import test_store_conformance as suite
from tests.store_backends import BACKENDS, EPOCH, Backend, FakeClock
from tests.test_store_conformance import Opener, must, owned

# The suite's fixtures: a fresh backend, its fake clock, and store objects opened on it.
backend, clock, store, stores = suite.backend, suite.clock, suite.store, suite.stores


def put(key: str, value: object, expected: int | None, *, tenant: str = "t1",
        namespace: str = "ns", session: str | None = None, step: str | None = None,
        agent: str | None = None) -> StateWrite:
    return StateWrite(tenant=tenant, namespace=namespace, key=key, value=json.dumps(value),
                      expected_version=expected, session_id=session, step_key=step,
                      agent=agent)


async def value(store: Store, key: str, *, tenant: str = "t1", namespace: str = "ns"
                ) -> tuple[int, object]:
    """``(version, decoded value)`` of a key; ``(0, None)`` if it does not exist."""
    e = await store.state_get(tenant, namespace, key)
    return (0, None) if e is None else (e.version, json.loads(e.value))


# -- reads and writes ------------------------------------------------------------------------


async def test_a_key_never_written_reads_as_none(store: Store) -> None:
    assert await store.state_get("t1", "ns", "k") is None
    assert await store.state_history("t1", "ns", "k") == []
    assert await store.state_list("t1", "ns") == []
    assert await store.state_namespaces("t1") == {}


@pytest.mark.parametrize("expected", [0, None])
async def test_creating_a_key_expects_version_0_or_none(store: Store, clock: FakeClock,
                                                        expected: int | None) -> None:
    res = await store.state_put(put("k", {"n": 1}, expected, session="s", step="0/1",
                                    agent="billing"))
    want = StateEntry(tenant="t1", namespace="ns", key="k", version=1, value='{"n": 1}',
                      session_id="s", agent="billing", step_key="0/1", at=clock.now)
    assert res.written and res.entry == want and res.woken == 0
    assert await store.state_get("t1", "ns", "k") == want


async def test_a_write_on_the_version_read_lands_as_the_next_version(store: Store) -> None:
    await store.state_put(put("k", 1, 0))
    res = await store.state_put(put("k", 2, 1))
    assert res.written and res.entry is not None and res.entry.version == 2
    assert await value(store, "k") == (2, 2)


async def test_a_stale_write_is_refused_and_returns_the_current_version(
        store: Store, clock: FakeClock) -> None:
    await store.state_put(put("k", "a", 0))
    await store.state_put(put("k", "b", 1, session="s1", step="3"))
    res = await store.state_put(put("k", "stale", 1))
    assert not res.written
    assert res.entry is not None and (res.entry.version, res.entry.value) == (2, '"b"')
    assert res.entry.session_id == "s1" and res.entry.step_key == "3"
    assert await value(store, "k") == (2, "b")
    assert len(await store.state_history("t1", "ns", "k")) == 2


async def test_creating_a_key_that_exists_is_a_conflict(store: Store) -> None:
    await store.state_put(put("k", "a", 0))
    for expected in (0, None):
        res = await store.state_put(put("k", "again", expected))
        assert not res.written and res.entry is not None and res.entry.version == 1


async def test_expecting_a_version_of_a_missing_key_is_a_conflict_without_entry(
        store: Store) -> None:
    res = await store.state_put(put("k", "x", 3))
    assert not res.written and res.entry is None
    assert await store.state_get("t1", "ns", "k") is None


async def test_history_keeps_every_version_with_its_writer_oldest_first(
        store: Store, clock: FakeClock) -> None:
    for v in range(1, 5):
        clock.advance(1)
        await store.state_put(put("k", v * 10, v - 1, session=f"s{v}", step=f"{v}",
                                  agent="a"))
    history = await store.state_history("t1", "ns", "k")
    assert [(e.version, e.value, e.session_id, e.step_key, e.at) for e in history] == [
        (v, str(v * 10), f"s{v}", f"{v}", EPOCH + v) for v in range(1, 5)]
    newest = await store.state_history("t1", "ns", "k", limit=2)
    assert [e.version for e in newest] == [3, 4]


async def test_a_writer_that_wrote_a_key_before_gets_its_version_back_not_a_new_one(
        store: Store) -> None:
    """A step that wrote, then crashed before journaling it, writes again on resume: the
    store recognises the writer and does not apply the write twice, even after others
    wrote the key since."""
    first = await store.state_put(put("k", 1, 0, session="s", step="2/0"))
    await store.state_put(put("k", 5, 1, session="other", step="0"))
    again = await store.state_put(put("k", 1, 0, session="s", step="2/0"))
    assert again.written and again.entry == first.entry
    assert await value(store, "k") == (2, 5)
    assert len(await store.state_history("t1", "ns", "k")) == 2


async def test_writes_without_a_writer_are_never_deduplicated(store: Store) -> None:
    await store.state_put(put("k", 1, 0))
    res = await store.state_put(put("k", 1, 1))
    assert res.written and res.entry is not None and res.entry.version == 2


async def test_tenants_and_namespaces_are_kept_apart(store: Store) -> None:
    await store.state_put(put("k", "t1", 0))
    await store.state_put(put("k", "t2", 0, tenant="t2"))
    await store.state_put(put("k", "other ns", 0, namespace="customer:42"))
    await store.state_put(put("j", "x", 0, namespace="customer:42"))
    assert await value(store, "k") == (1, "t1")
    assert await value(store, "k", tenant="t2") == (1, "t2")
    assert await value(store, "k", namespace="customer:42") == (1, "other ns")
    res = await store.state_put(put("k", "t2 again", 1, tenant="t2"))
    assert res.written and await value(store, "k") == (1, "t1")
    assert [e.key for e in await store.state_list("t1", "customer:42")] == ["j", "k"]
    assert await store.state_list("t3", "customer:42") == []
    assert await store.state_namespaces("t1") == {"customer:42": 2, "ns": 1}
    assert await store.state_namespaces("t2") == {"ns": 1}
    assert await store.state_history("t2", "customer:42", "k") == []


async def test_list_returns_the_current_version_of_every_key_by_key(store: Store) -> None:
    for key in ("b", "a", "c"):
        await store.state_put(put(key, key, 0))
    await store.state_put(put("a", "a2", 1))
    listed = await store.state_list("t1", "ns")
    assert [(e.key, e.version, json.loads(e.value)) for e in listed] == [
        ("a", 2, "a2"), ("b", 1, "b"), ("c", 1, "c")]


# -- watches ---------------------------------------------------------------------------------


async def test_a_write_past_the_watched_version_signals_the_waiting_session(
        store: Store) -> None:
    await store.state_put(put("k", 1, 0))
    await owned(store, "s")
    assert await store.state_watch("t1", "ns", "k", session_id="s", name="w",
                                   after_version=1) is False
    await store.park("s", "A", SessionOutcome(status="waiting"), wake_at=None, wait_name="w")
    assert (await must(store, "s")).status == "waiting"
    res = await store.state_put(put("k", 2, 1))
    assert res.woken == 1
    assert (await must(store, "s")).status == "pending"
    sig = await store.next_signal("s", "w")
    assert sig is not None and json.loads(sig.payload) == {"namespace": "ns", "key": "k",
                                                           "version": 2}


async def test_a_write_wakes_a_session_waiting_for_it_among_other_signals(
        store: Store) -> None:
    """A gather's branches wait for a signal and for a key's change: the write wakes the
    session (its watch's name is one of the several it waits for)."""
    await store.state_put(put("k", 1, 0))
    await owned(store, "s")
    assert await store.state_watch("t1", "ns", "k", session_id="s", name="w",
                                   after_version=1) is False
    await store.park("s", "A", SessionOutcome(status="waiting"), wake_at=None,
                     wait_name=joined_wait_names(["approve", "w"]))
    assert (await must(store, "s")).status == "waiting"
    res = await store.state_put(put("k", 2, 1))
    assert res.woken == 1
    assert (await must(store, "s")).status == "pending"


async def test_a_watch_fires_once(store: Store) -> None:
    await owned(store, "s")
    await store.state_watch("t1", "ns", "k", session_id="s", name="w", after_version=0)
    assert (await store.state_put(put("k", 1, 0))).woken == 1
    assert (await store.state_put(put("k", 2, 1))).woken == 0


async def test_a_refused_write_fires_no_watch(store: Store) -> None:
    await store.state_put(put("k", 1, 0))
    await owned(store, "s")
    await store.state_watch("t1", "ns", "k", session_id="s", name="w", after_version=1)
    assert (await store.state_put(put("k", 2, 0))).woken == 0
    assert await store.next_signal("s", "w") is None


async def test_watching_a_key_already_past_the_version_answers_true_at_once(
        store: Store) -> None:
    await owned(store, "s")
    await store.state_put(put("k", 1, 0))
    await store.state_put(put("k", 2, 1))
    assert await store.state_watch("t1", "ns", "k", session_id="s", name="w",
                                   after_version=1) is True
    assert (await store.state_put(put("k", 3, 2))).woken == 0  # nothing was registered


async def test_a_watch_never_signals_a_session_of_another_tenant(store: Store) -> None:
    await owned(store, "s", tenant="t2")
    assert await store.state_watch("t1", "ns", "k", session_id="s", name="w",
                                   after_version=0) is False
    assert (await store.state_put(put("k", 1, 0))).woken == 0
    assert await store.next_signal("s", "w") is None


# -- concurrency and durability --------------------------------------------------------------


async def increment(store: Store, key: str, rng: random.Random) -> int:
    """Read, yield to the others (random delays), compare-and-set value + 1; retry on a
    conflict. The number of conflicts."""
    conflicts = 0
    while True:
        version, current = await value(store, key)
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        res = await store.state_put(put(key, int(current or 0) + 1, version))  # type: ignore[call-overload]
        if res.written:
            return conflicts
        conflicts += 1


async def test_concurrent_writers_on_two_stores_lose_no_update(stores: Opener) -> None:
    a, b = await stores(), await stores()
    rng = random.Random(7)
    n = 60
    conflicts = await asyncio.gather(*(increment(a if i % 2 else b, f"k{i % 3}", rng)
                                       for i in range(n)))
    assert sum(conflicts) > 0  # they did race
    for k in range(3):
        assert await value(a, f"k{k}") == (n // 3, n // 3)
        history = await b.state_history("t1", "ns", f"k{k}")
        assert [(e.version, json.loads(e.value)) for e in history] == [
            (v, v) for v in range(1, n // 3 + 1)]


async def test_acknowledged_state_writes_survive_an_abandoned_store(stores: Opener) -> None:
    a = await stores()
    await a.state_put(put("k", 1, 0))
    await a.state_put(put("k", 2, 1))
    # a crashes: never closed, never used again
    b = await stores()
    assert await value(b, "k") == (2, 2)
    assert not (await b.state_put(put("k", 3, 1))).written


_CHILD = """
import asyncio, json, random

async def main():
{build}
    from convoy.stores._protocol import StateWrite
    await store.open()
    rng = random.Random({seed})
    for i in range(10**6):
        while True:
            e = await store.state_get("t1", "ns", "k")
            version, n = (0, 0) if e is None else (e.version, json.loads(e.value))
            await asyncio.sleep(rng.random() * 0.002)
            res = await store.state_put(StateWrite(tenant="t1", namespace="ns", key="k",
                value=json.dumps(n + 1), expected_version=version,
                session_id="w{seed}", step_key=str(i)))
            if res.written:
                print(res.entry.version, flush=True)
                break

asyncio.run(main())
"""


@pytest.mark.slow
async def test_cas_writers_in_several_processes_lose_no_update_even_when_one_is_killed(
        backend: Backend, stores: Opener) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (suite._convoy_src(), os.environ.get("PYTHONPATH")) if p)}
    build = textwrap.indent(backend.child_source(f"lambda: {EPOCH!r}"), "    ")
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD.format(build=build, seed=seed), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for seed in range(3)]
    acked: list[list[int]] = [[] for _ in procs]
    try:
        while min(len(a) for a in acked) < 40:
            for p, got in zip(procs, acked, strict=True):
                assert p.stdout is not None
                line = await asyncio.wait_for(p.stdout.readline(), 60)  # a safety net only
                if not line.endswith(b"\n"):
                    assert p.stderr is not None
                    why = (await p.stderr.read()).decode(errors="replace")
                    raise AssertionError(f"a writer died:\n{why}")
                got.append(int(line))
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGKILL)
    for p, got in zip(procs, acked, strict=True):
        assert p.stdout is not None
        got += [int(x) for x in (await p.stdout.read()).decode().split("\n")[:-1]]
        await p.wait()
        assert p.returncode == -signal.SIGKILL
    s = await stores()
    history = await s.state_history("t1", "ns", "k")
    # every version is the one before plus one: no write was lost or applied twice
    assert [json.loads(e.value) for e in history] == list(range(1, len(history) + 1))
    versions = [v for got in acked for v in got]
    assert len(set(versions)) == len(versions)  # each acknowledged version is one writer's
    assert set(versions) <= {e.version for e in history}


# -- property: compare-and-set under random interleavings -----------------------------------

WRITERS = ("w0", "w1", "w2", "w3")
_step = st.tuples(st.sampled_from(WRITERS), st.sampled_from(("read", "write", "write")))


async def _cas_interleaving(b: Backend, ops: list[tuple[str, str]]) -> None:
    clock = FakeClock()
    objects = [b.new(clock), b.new(clock)]  # two processes' store objects
    for s in objects:
        await s.open()
    try:
        version = 0  # the spec: one counter, its value is the number of landed writes
        seen: dict[str, int] = {}
        for i, (w, op) in enumerate(ops):
            s = objects[WRITERS.index(w) % 2]
            what = f"op {i} {w} {op}, spec at version {version}, reads {seen}"
            if op == "read":
                seen[w] = (await value(s, "c"))[0]
                assert seen[w] == version, what
                continue
            read = seen.pop(w, 0)  # a write without a read creates the key
            res = await s.state_put(put("c", read + 1, read, session=w, step=str(i)))
            if read == version:
                assert res.written, what
                version += 1
            else:
                assert not res.written, what
            assert res.entry is None if version == 0 else \
                (res.entry is not None and res.entry.version == version), what
        history = await objects[0].state_history("t1", "ns", "c")
        assert [json.loads(e.value) for e in history] == list(range(1, version + 1))
    finally:
        for s in objects:
            await s.aclose()


@pytest.mark.parametrize("backend_cls", BACKENDS, ids=lambda b: b.name)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_step, min_size=2, max_size=30))
def test_random_cas_interleavings_lose_no_update(backend_cls: type[Backend],
                                                 ops: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        b = backend_cls(Path(d))
        try:
            asyncio.run(_cas_interleaving(b, ops))
        finally:
            b.cleanup()
