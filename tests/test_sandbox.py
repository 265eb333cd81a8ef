"""Sandboxed tools (issue 10, item 6): each call runs in a fresh, locked-down process; a
limit hit, a refusal or a crash is a typed ToolSandboxError, journaled and reported to the
model, and the engine keeps running its other sessions. Real processes, no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy import ModelRequest, ToolSandboxError
from convoy._errors import error_from_record, error_to_record
from convoy.sandbox import _runner

from . import sandbox_tools as T

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                                reason="the sandbox is Linux-only")
ROOT = os.geteuid() == 0
CTX: convoy.ToolContext[Any] = convoy.ToolContext(
    session_id="s", tenant="acme", agent="a", step_key="0/1", idempotency_key="s:0/1")


async def call(t: convoy.Tool, args: dict[str, Any] | None = None,
               ctx: convoy.ToolContext[Any] = CTX) -> Any:
    return await t.invoke(t.validate_args(json.dumps(args or {})), ctx)


async def stopped(t: convoy.Tool, args: dict[str, Any] | None = None) -> ToolSandboxError:
    with pytest.raises(ToolSandboxError) as info:
        await call(t, args)
    return info.value


async def until(cond: Any) -> None:
    """Wait for observable state (bounded, so a bug fails instead of hanging)."""
    async with asyncio.timeout(30):
        while not cond():  # noqa: ASYNC110 - the state changes in other processes
            await asyncio.sleep(0.005)


def sandbox_pids() -> list[int]:
    """Processes running under a sandbox's own user id (root gives each call one)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid >= _runner._UID_BASE:
                    found.append(int(entry))
            except FileNotFoundError:
                pass
    return found


@pytest.fixture
def loopback() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    srv = socket.create_server(("127.0.0.1", 0))
    accepted: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepted.append(b"connected")
            conn.sendall(b"hello from the engine's machine")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(srv.getsockname()) as probe:  # it serves
        assert probe.recv(100).startswith(b"hello")
    accepted.clear()
    yield srv.getsockname()[1], accepted
    srv.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
    srv.close()
    thread.join()


# -- values cross as JSON, validated on both sides ---------------------------------------

async def test_a_sandboxed_call_runs_in_another_locked_down_process() -> None:
    assert await call(T.add, {"a": 2, "b": 40}) == 42
    assert await call(T.mirror, {"p": {"x": 1, "y": 2}}) == T.Point(x=2, y=1)
    assert await call(T.async_add, {"a": 1, "b": 1}) == 2
    facts = await call(T.whoami)
    assert facts["pid"] != os.getpid()
    if ROOT:
        assert facts["uid"] >= _runner._UID_BASE  # not root: a user id of its own
    assert Path(facts["cwd"]).name.startswith("convoy-sandbox-")
    assert set(facts["env"]) == {"PATH", "LANG", "HOME", "TMPDIR"}
    await until(lambda: not os.path.exists(facts["cwd"]))  # removed after the call


async def test_a_tool_error_in_the_sandbox_is_an_ordinary_tool_error() -> None:
    with pytest.raises(convoy.ToolError, match="raised ValueError: no such order") as info:
        await call(T.fails, {"reason": "no such order"})
    assert not isinstance(info.value, ToolSandboxError)
    assert not info.value.retryable and not info.value.timeout


async def test_a_tool_that_times_out_in_the_sandbox_times_out_as_outside_it() -> None:
    # Its own TimeoutError: retryable and a timeout (the model is told it timed out), as
    # the same tool's call outside a sandbox is.
    with pytest.raises(convoy.ToolError, match="raised TimeoutError: crm did not") as info:
        await call(T.gives_up, {"service": "crm"})
    assert not isinstance(info.value, ToolSandboxError)
    assert info.value.retryable and info.value.timeout
    outside = convoy.tool(T.gives_up.fn, name="gives_up_outside")
    with pytest.raises(convoy.ToolError, match="raised TimeoutError: crm did not") as info:
        await call(outside, {"service": "crm"})
    assert info.value.retryable and info.value.timeout
    # What counts is the class, not its name: a subclass is a timeout, a namesake is not.
    for t, timeout in ((T.crm_gives_up, True), (T.named_like_a_timeout, False)):
        for tool in (t, convoy.tool(t.fn, name=f"{t.name}_outside")):
            with pytest.raises(convoy.ToolError) as info:
                await call(tool, {"service": "crm"})
            assert (info.value.retryable, info.value.timeout) == (timeout, timeout), tool.name


async def test_json_deps_cross_into_the_sandbox() -> None:
    ctx = convoy.ToolContext(session_id="s", tenant="acme", agent="a", step_key="0/1",
                             idempotency_key="s:0/1", deps=T.Settings(region="eu"))
    assert await call(T.region, {"city": "Lyon"}, ctx) == "Lyon@eu/acme/s:0/1"


def test_what_cannot_cross_is_refused_at_definition() -> None:
    class Pool:
        pass

    def local(x: int) -> int:
        return x

    with pytest.raises(convoy.UserError, match="top level of a module"):
        convoy.tool(sandbox=convoy.Sandbox())(local)
    with pytest.raises(convoy.UserError, match=r"ToolContext\[Pool\].*cannot cross"):
        def uses_pool(ctx: convoy.ToolContext[Pool], x: int) -> int:
            return x
        uses_pool.__qualname__ = "uses_pool"  # importable as far as the name goes
        convoy.tool(sandbox=convoy.Sandbox())(uses_pool)
    with pytest.raises(convoy.UserError, match="drop isolate="):
        convoy.tool(sandbox=convoy.Sandbox(), isolate="process")(local)
    with pytest.raises(convoy.UserError, match="memory_mb must be a positive number"):
        convoy.Sandbox(memory_mb=0)


# -- the figure: stopped and reported ----------------------------------------------------

async def test_unbounded_memory_is_stopped() -> None:
    e = await stopped(T.hog)
    assert e.limit == "memory_mb" and e.value == 64 and not e.retryable
    assert e.details == {"sandbox": {"stopped_by": "memory_mb", "limit": 64}}


async def test_native_code_out_of_memory_is_stopped_by_the_memory_limit() -> None:
    """A new user's trial: a tool whose result did not fit its memory once written as JSON
    was said to have crashed ("killed by SIGABRT; last output: note: run with
    RUST_BACKTRACE=1"): Rust's allocator aborts where Python raises MemoryError. It is the
    memory limit that stopped it."""
    e = await stopped(T.native_hog)
    assert e.limit == "memory_mb" and e.value == 64 and not e.retryable, e
    assert "ran out of memory" in str(e), e


async def test_spinning_forever_is_stopped_by_its_cpu_time() -> None:
    e = await stopped(T.spin)  # wall_seconds=60: the CPU limit (1 s) stops it, not time
    assert e.limit == "cpu_seconds" and e.signal in ("SIGXCPU", "SIGKILL")


async def test_sleeping_past_the_wall_clock_is_stopped() -> None:
    e = await stopped(T.slow_nap)  # sleeps an hour: any machine hits the 0.5 s limit
    assert e.limit == "wall_seconds"


@pytest.fixture(params=["namespaces", "no namespaces"])
def namespaces(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways a sandbox is built: in new namespaces, and without (as where the kernel
    refuses them) on the per-call user id, rlimits, Landlock and seccomp alone."""
    monkeypatch.setattr(_runner, "USE_NAMESPACES", request.param == "namespaces")
    return bool(request.param == "namespaces")


@pytest.mark.skipif(not ROOT, reason="a per-call user id (for RLIMIT_NPROC) needs root")
async def test_a_fork_bomb_is_stopped_and_leaves_no_process(namespaces: bool) -> None:
    e = await stopped(T.bomb)
    assert e.limit == "max_processes" and e.value == 8
    await until(lambda: not sandbox_pids())  # every process of the call was killed


@pytest.mark.skipif(not ROOT, reason="a per-call user id needs root")
async def test_a_process_that_leaves_the_group_does_not_outlive_the_call(
        namespaces: bool) -> None:
    assert await call(T.escape) == 1
    await until(lambda: not sandbox_pids())


async def test_a_socket_to_a_loopback_server_is_refused(
        loopback: tuple[int, list[bytes]], namespaces: bool) -> None:
    port, accepted = loopback
    e = await stopped(T.dial, {"port": port})
    assert e.limit == "network"
    # around Python's socket module, straight through libc: the kernel refuses it
    with pytest.raises(convoy.ToolError, match=r"socket|connect"):
        await call(T.native_dial, {"port": port})
    assert accepted == []


async def test_the_engines_secrets_do_not_reach_the_sandbox(namespaces: bool) -> None:
    os.environ["CONVOY_TEST_SECRET"] = secret = uuid.uuid4().hex
    try:
        assert await call(T.secret, {"name": "CONVOY_TEST_SECRET"}) == "<unset>"
        with pytest.raises(convoy.ToolError) as info:  # nor through /proc
            await call(T.peek, {"path": f"/proc/{os.getpid()}/environ"})
        assert secret not in str(info.value)
    finally:
        del os.environ["CONVOY_TEST_SECRET"]
    try:
        assert (await call(T.greet, {"name": "Ann"}))["text"] == "hello, Ann"  # given: yes
    finally:
        _runner.WARM.close()


async def test_writing_outside_its_temporary_directory_is_refused(
        tmp_path: Path, namespaces: bool) -> None:
    target = tmp_path / "escaped.txt"
    e = await stopped(T.scribble, {"path": str(target)})
    assert e.limit == "filesystem" and "outside its temporary directory" in str(e)
    with pytest.raises(convoy.ToolError, match="open"):  # through libc: Landlock refuses
        await call(T.native_scribble, {"path": str(target)})
    assert not target.exists()
    # reading outside its read paths too: the engine's own files
    e = await stopped(T.peek, {"path": str(Path(__file__))})
    assert e.limit == "filesystem"
    out = await call(T.notes, {"text": "kept"})  # its own directory is writable
    assert out["text"] == "kept"
    await until(lambda: not os.path.exists(out["cwd"]))


async def test_no_new_namespaces_inside_the_sandbox(namespaces: bool) -> None:
    import errno

    assert await call(T.new_namespace) == errno.EPERM  # seccomp refuses unshare


async def test_a_machine_without_pidfds_cannot_sandbox(monkeypatch: pytest.MonkeyPatch,
                                                        ) -> None:
    # Not Linux (macOS has no os.pidfd_open): every call fails typed, "unavailable",
    # rather than with whatever the engine's side raised, and no process is started.
    monkeypatch.delattr(os, "pidfd_open")
    before = set(_runner._Process.live)
    error = await stopped(T.add, {"a": 1, "b": 2})
    assert error.limit == "unavailable"
    assert "Linux" in str(error)
    assert set(_runner._Process.live) == before


async def test_a_crashed_sandbox_process_is_a_typed_error() -> None:
    e = await stopped(T.die, {"code": 3})
    assert e.limit == "crashed" and e.exit_code == 3
    e = await stopped(T.vanish)
    assert e.limit == "crashed" and e.signal == "SIGKILL"


async def test_what_the_sandbox_says_is_not_trusted() -> None:
    import sys

    assert "this" not in sys.modules  # importing it prints; nothing here imports it
    with pytest.raises(convoy.ToolError, match="raised Forged: forged") as info:
        await call(T.forge, {"module": "this"})
    assert not isinstance(info.value, ToolSandboxError)
    assert "this" not in sys.modules  # the engine imported nothing the sandbox named


async def test_a_cancelled_call_kills_its_sandbox() -> None:
    task = asyncio.create_task(call(T.sleeper))
    await until(lambda: _live(T.sleeper))
    procs = _live(T.sleeper)
    task.cancel()  # what a tool timeout does
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: all(p.popen.returncode is not None and not os.path.exists(p.tmpdir)
                            for p in procs))


async def test_calls_past_max_concurrent_wait_for_a_process() -> None:
    tasks = [asyncio.create_task(call(T.pair_sleeper)) for _ in range(4)]
    await until(lambda: len(_live(T.pair_sleeper)) == 2)
    _, slots = _runner._SLOTS[asyncio.get_running_loop()][id(T.pair_sleeper.sandbox)]
    await until(lambda: len(slots._waiters or ()) == 2)  # the other two wait, no process
    assert len(_live(T.pair_sleeper)) == 2
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await until(lambda: not _live(T.pair_sleeper))


def _live(t: convoy.Tool) -> list[_runner._Process]:
    return [p for p in list(_runner._Process.live) if p.sandbox is t.sandbox]


async def test_sandboxed_calls_run_concurrently() -> None:
    results = await asyncio.gather(*[call(T.add, {"a": i, "b": i}) for i in range(8)],
                                   call(T.hog), call(T.die, {"code": 1}),
                                   return_exceptions=True)
    assert results[:8] == [2 * i for i in range(8)]
    assert [(type(e), getattr(e, "limit", None)) for e in results[8:]] == \
        [(ToolSandboxError, "memory_mb"), (ToolSandboxError, "crashed")]


async def test_a_warm_process_serves_the_next_call() -> None:
    try:
        first = await call(T.greet, {"name": "a"})
        await until(lambda: _runner.WARM.idle(T.greet) == 1)  # started ahead of a call
        second = await call(T.greet, {"name": "b"})
        assert second["text"] == "hello, b" and second["cwd"] != first["cwd"]
    finally:
        _runner.WARM.close()


def test_a_sandbox_error_round_trips_through_the_journal() -> None:
    e = ToolSandboxError("tool 'x' was stopped", limit="memory_mb", value=64)
    back = error_from_record(json.loads(json.dumps(error_to_record(e))))
    assert isinstance(back, ToolSandboxError)
    assert (back.limit, back.value, back.details) == ("memory_mb", 64, e.details)


# -- on the engine: reported to the model, journaled; other sessions carry on ------------

def _agent(tool: convoy.Tool, args: dict[str, Any], seen: list[ModelRequest]) -> Any:
    def script(req: ModelRequest) -> Any:
        seen.append(req)
        if req.messages[-1].role == "tool":
            return {"text": "done: " + (req.messages[-1].content or "")}
        return {"tool_calls": [{"name": tool.name, "arguments": args}]}

    return convoy.Agent(name=f"use_{tool.name}", tools=[tool], model=convoy.SimModel(script))


def _flow(agent: convoy.Agent[Any, Any]) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=f"sandbox-{agent.name}")
    async def wf(ctx: convoy.Context, text: str) -> str:
        return str(await ctx.run(agent, text))

    return wf


async def test_the_engine_keeps_running_other_sessions(engine_factory: Any,
                                                       loopback: tuple[int, list[bytes]]) -> None:
    port, accepted = loopback
    bad = [(T.hog, {}), (T.spin, {}), (T.dial, {"port": port}), (T.vanish, {})]
    if ROOT:
        bad.append((T.bomb, {}))
    seen: dict[str, list[ModelRequest]] = {}
    flows = {}
    for tool, args in [*bad, (T.add, {"a": 1, "b": 2})]:
        flows[tool.name] = _flow(_agent(tool, args, seen.setdefault(tool.name, [])))
    eng = engine_factory()
    runs = [eng.run(flows[t.name], "go") for t, _ in bad]
    runs += [eng.run(flows["add"], f"go {i}") for i in range(12)]
    results = await asyncio.gather(*runs)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert all(r.output == "done: 3" for r in results[len(bad):])
    expected = {"hog": "memory_mb", "spin": "cpu_seconds", "dial": "network",
                "vanish": "crashed", "bomb": "max_processes"}
    for (tool, _), res in zip(bad, results, strict=False):
        reply = json.loads(seen[tool.name][-1].messages[-1].content or "{}")
        assert reply["sandbox"]["stopped_by"] == expected[tool.name], reply
        [rec] = [r for r in await eng.store.journal(res.id) if r.kind == "tool"]
        err = error_from_record(json.loads(rec.result or "{}"))
        assert isinstance(err, ToolSandboxError) and err.limit == expected[tool.name]
    assert accepted == []


# -- an engine that does not run as root ---------------------------------------------------

NOT_ROOT_SCRIPT = """
import asyncio, json, sys
sys.path[:0] = json.loads(sys.argv[1])
import convoy
from convoy.sandbox import _runner
from tests import sandbox_tools as T

CTX = convoy.ToolContext(session_id="s", tenant="t", agent="a", step_key="k",
                         idempotency_key="i")

async def outcome(t, args):
    try:
        return await t.invoke(t.validate_args(json.dumps(args)), CTX)
    except convoy.ToolSandboxError as e:
        return e.limit

async def main():
    out = {"add": await outcome(T.add, {"a": 1, "b": 2}),
           "bomb": await outcome(T.bomb, {}), "hog": await outcome(T.hog, {}),
           "dial": await outcome(T.dial, {"port": 9}),
           "scribble": await outcome(T.scribble, {"path": "/tmp/escaped"})}
    _runner.USE_NAMESPACES = False  # as where user namespaces are refused
    out["without namespaces"] = await outcome(T.add, {"a": 1, "b": 2})
    print(json.dumps(out))

asyncio.run(main())
"""


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
          "--inh-caps=-all", "--bounding-set=-all"]


def _python_for_nobody() -> str | None:
    """An interpreter of this Python version that an unprivileged user may run."""
    import shutil
    import sys

    for exe in (f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}", sys.executable):
        probe = [*NOBODY, exe, "-c", "import os, sys; os.execv(sys.executable, ['python'])"]
        if shutil.which("setpriv") and os.path.exists(exe) and \
                subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return exe
    return None


@pytest.mark.skipif(not ROOT, reason="starts the engine as another user")
def test_an_engine_that_is_not_root_sandboxes_in_a_user_namespace(tmp_path: Path) -> None:
    import sys

    exe = _python_for_nobody()
    if exe is None:
        pytest.skip("no Python interpreter an unprivileged user may run")
    os.chmod(tmp_path, 0o777)
    paths = [str(Path(_runner.__file__).parents[2]), str(Path(__file__).parents[1]),
             *[p for p in sys.path if p.endswith("site-packages")]]
    out = subprocess.run([*NOBODY, exe, "-c", NOT_ROOT_SCRIPT, json.dumps(paths)], cwd=tmp_path,
                         capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == {
        "add": 3, "bomb": "max_processes", "hog": "memory_mb", "dial": "network",
        "scribble": "filesystem",
        # RLIMIT_NPROC would count every process of the engine's user: refused, not weaker
        "without namespaces": "unavailable"}
