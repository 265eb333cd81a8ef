"""The engine's side of a sandboxed call: start (or take a warm) sandbox process, hand it
the call, wait for its answer, its death or the wall-clock limit, then kill every process
of the call and remove its temporary directory.

Nothing here blocks the event loop: the process's answers and its exit are watched with
``loop.add_reader`` on its stdout and on a pidfd. A call that is cancelled (a tool timeout)
kills the process at once.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, get_args

from convoy._errors import ToolError
from convoy.sandbox._config import Sandbox, SandboxStop, ToolSandboxError

_MAX_LINE = 64 * 2**20  # a larger answer is refused, not buffered without end
_UID_BASE = 1_500_000_000  # per-call user ids: no account uses these
_BOOT = ("import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
         "from convoy.sandbox._child import main; main()")
_CONVOY_HOME = str(Path(__file__).resolve().parents[2])  # the directory holding convoy/
#: Try namespaces (Linux). Off, the sandbox rests on the rest alone, as where the kernel
#: refuses them (Docker's default profile); tests turn it off to check that path.
USE_NAMESPACES = sys.platform == "linux"
_uids = itertools.count()
_uids_in_use: set[int] = set()
_lock = threading.Lock()


def _own_uid() -> int | None:
    """A user id for one call (root only: others cannot change user)."""
    if os.geteuid() != 0:
        return None
    with _lock:
        while True:
            uid = _UID_BASE + (os.getpid() % 100_000) * 1000 + next(_uids) % 1000
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _read_paths(sandbox: Sandbox) -> list[str]:
    import site

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(__file__).resolve().parents[1]), *site.getsitepackages()}
    return sorted(paths) + [os.path.abspath(p) for p in sandbox.read_paths]


class _Process:
    """One sandbox process, from start to cleanup."""

    #: started and not yet cleaned up (tests watch it)
    live: ClassVar[set[_Process]] = set()

    def __init__(self, ref: dict[str, str], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.tmpdir = tempfile.mkdtemp(prefix="convoy-sandbox-")
        self.uid = _own_uid()
        if self.uid is not None:
            os.chown(self.tmpdir, self.uid, self.uid)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "HOME": self.tmpdir, "TMPDIR": self.tmpdir, **sandbox.env}
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _cleanup
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _BOOT, json.dumps([_CONVOY_HOME, *sys.path])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                cwd=self.tmpdir, env=env, start_new_session=True, close_fds=True)
        except OSError:
            self.stderr.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            with _lock:
                _uids_in_use.discard(self.uid or -1)
            raise
        self.pidfd = os.pidfd_open(self.popen.pid)
        self.out = self.popen.stdout.fileno()  # type: ignore[union-attr]
        os.set_blocking(self.out, False)
        self.buf = bytearray()
        self.lines: deque[dict[str, Any]] = deque()
        self.eof = False
        self.exited = False
        self.pid_namespace = False  # known once the process said ready
        self.closed = False
        setup = {"tool": ref, "sys_path": sys.path, "read_paths": _read_paths(sandbox),
                 "uid": self.uid, "namespaces": USE_NAMESPACES,
                 "sandbox": {"cpu_seconds": sandbox.cpu_seconds,
                             "memory_mb": sandbox.memory_mb, "file_mb": sandbox.file_mb,
                             "max_processes": sandbox.max_processes,
                             "network": sandbox.network}}
        self.send(setup)
        _Process.live.add(self)

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died: its exit says why
            stdin.write((json.dumps(message) + "\n").encode())
            stdin.flush()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.out, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self.eof = True
                return
            self.buf += chunk
            *complete, rest = self.buf.split(b"\n")
            for line in complete:
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = {"garbled": line[:200].decode(errors="replace")}
                self.lines.append(msg if isinstance(msg, dict) else {"garbled": str(msg)})
            self.buf = bytearray(rest)
            if len(self.buf) > _MAX_LINE:
                self.lines.append({"garbled": f"an answer longer than {_MAX_LINE} bytes"})
                self.buf.clear()

    async def next(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The next message; ``None`` when the process ended without one (or closed its
        output). Raises ``TimeoutError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        def on_exit() -> None:
            self.exited = True
            wake()

        self._read()
        if self.lines:
            return self.lines.popleft()
        if self.eof or self.exited:
            return None
        loop.add_reader(self.out, wake)
        loop.add_reader(self.pidfd, on_exit)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await woken
                    woken = loop.create_future()
                    self._read()
                    if self.lines:
                        return self.lines.popleft()
                    if self.eof or self.exited:
                        return None
        finally:
            loop.remove_reader(self.out)
            loop.remove_reader(self.pidfd)

    def stderr_tail(self) -> str:
        """The last line of what the process wrote to stderr."""
        text = self.stderr_end()
        return text.splitlines()[-1] if text else ""

    def stderr_end(self) -> str:
        """The last 2,000 bytes of what the process wrote to stderr."""
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 2000))
            return self.stderr.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def kill(self) -> None:
        """Kill every process of the call: its process group, and with it (PID namespace)
        the namespace's init, whose death takes down everything that left the group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if not self.pid_namespace and self.uid is not None:
            _kill_user(self.uid)  # those that left the group (setsid) run as its user id

    async def exit_status(self) -> int | None:
        """After :meth:`kill`: wait until the process is gone (its pidfd says so, without
        blocking the loop), reap it and give its exit code."""
        if not self.exited and self.popen.poll() is None:
            loop = asyncio.get_running_loop()
            gone: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self.pidfd, _resolve, gone)
            try:
                async with asyncio.timeout(10):
                    await gone
            except TimeoutError:
                return None  # stuck in the kernel; the cleanup thread reaps it
            finally:
                loop.remove_reader(self.pidfd)
        return self.popen.wait()

    def close(self, *, wait: bool = False) -> None:
        """Kill, reap, remove the temporary directory. Reaping a killed process takes a
        moment; unless ``wait``, it happens on a daemon thread so the event loop never
        waits for it."""
        if self.closed:
            return
        self.closed = True
        self.kill()
        if wait:
            self._cleanup()
        else:
            threading.Thread(target=self._cleanup, name="convoy-sandbox-cleanup",
                             daemon=True).start()

    def _cleanup(self) -> None:
        self.popen.wait()
        for f in (self.popen.stdin, self.popen.stdout, self.stderr):
            with contextlib.suppress(OSError):
                f.close()  # type: ignore[union-attr]
        with contextlib.suppress(OSError):
            os.close(self.pidfd)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        with _lock:
            _uids_in_use.discard(self.uid or -1)
            _Process.live.discard(self)


def _kill_user(uid: int) -> None:
    """SIGKILL every process of a call's own user id, until none is left (each kill may
    race a fork; ``max_processes`` bounds how many there can be)."""
    for _ in range(100):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
        if not found:
            return


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Warm:
    """Processes started ahead of calls, per tool; each serves one call."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str], deque[_Process]] = {}

    def take(self, ref: dict[str, str], sandbox: Sandbox) -> _Process:
        """A started process for this tool: a warm one if one is alive, else a new one."""
        with _lock:
            idle = self._idle.setdefault((ref["module"], ref["qualname"]), deque())
            while idle:
                proc = idle.popleft()
                if proc.popen.poll() is None:
                    return proc
                proc.close()
        return _Process(ref, sandbox)

    def refill(self, ref: dict[str, str], sandbox: Sandbox) -> None:
        """Start processes until ``sandbox.warm`` wait for this tool. Called after a call,
        so they load while the agent does something else (its next model turn)."""
        key = (ref["module"], ref["qualname"])
        while True:
            with _lock:
                if len(self._idle.setdefault(key, deque())) >= sandbox.warm:
                    return
            started = _Process(ref, sandbox)
            with _lock:
                self._idle[key].append(started)

    def idle(self, tool: Any) -> int:
        """Processes started for ``tool`` and waiting for a call."""
        with _lock:
            return len(self._idle.get((tool.fn.__module__, tool.fn.__qualname__), ()))

    def close(self) -> None:
        """Kill the idle processes and remove their directories (at interpreter exit)."""
        with _lock:
            procs = [p for idle in self._idle.values() for p in idle]
            self._idle.clear()
        for p in procs:
            p.close(wait=True)


WARM = _Warm()
atexit.register(WARM.close)


async def run_sandboxed(name: str, ref: dict[str, str], sandbox: Sandbox, args_json: str,
                        ctx: dict[str, Any] | None) -> str:
    """Run one call of tool ``name`` in a sandbox process; return its result as JSON text.

    Raises:
        ToolSandboxError: a limit or refusal stopped it, it died, or the sandbox could not
            be built here.
        ToolError: the tool raised (its exception's type name and message).
    """
    if sys.platform != "linux" or not hasattr(os, "pidfd_open"):  # (its exit is a pidfd)
        raise _stopped(name, sandbox, "unavailable",
                       f"the sandbox needs Linux with os.pidfd_open (this is {sys.platform!r})")
    async with _slots(sandbox):
        try:
            proc = WARM.take(ref, sandbox)
        except OSError as e:  # the interpreter cannot be started (or its directory made)
            raise _stopped(name, sandbox, "unavailable",
                           f"its process could not start: {e}") from e
        try:
            return await _call(name, proc, sandbox, args_json, ctx)
        finally:
            proc.close()
            if sandbox.warm:
                with contextlib.suppress(OSError):  # the next call reports it
                    WARM.refill(ref, sandbox)


#: per event loop, per ``Sandbox`` (by identity; the entry keeps it alive): its bound
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                  dict[int, tuple[Sandbox, asyncio.Semaphore]]] = \
    weakref.WeakKeyDictionary()


def _slots(sandbox: Sandbox) -> asyncio.Semaphore:
    """The bound on calls of one ``Sandbox`` at once, in the running loop."""
    per_loop = _SLOTS.setdefault(asyncio.get_running_loop(), {})
    if id(sandbox) not in per_loop:
        per_loop[id(sandbox)] = (sandbox, asyncio.Semaphore(sandbox.max_concurrent))
    return per_loop[id(sandbox)][1]


async def _call(name: str, proc: _Process, sandbox: Sandbox, args_json: str,
                ctx: dict[str, Any] | None) -> str:
    try:
        ready = await proc.next(sandbox.start_seconds)
    except TimeoutError:
        raise _stopped(name, sandbox, "unavailable",
                       f"its process did not start within start_seconds="
                       f"{sandbox.start_seconds:g}") from None
    if ready is None or "ready" not in ready:
        why = (ready or {}).get("setup_error") or proc.stderr_tail() or "it exited"
        raise _stopped(name, sandbox, "unavailable", f"its sandbox could not be built: {why}")
    proc.pid_namespace = any(str(m).startswith("namespaces") for m in ready["ready"])
    proc.send({"args": args_json, "ctx": ctx})
    try:
        answer = await proc.next(sandbox.wall_seconds)
    except TimeoutError:
        raise _stopped(name, sandbox, "wall_seconds", "it ran out of wall-clock time") from None
    if answer is not None and "ok" in answer:
        return str(answer["ok"])
    if answer is not None and "error" in answer:
        raise _failed(name, sandbox, answer)
    raise await _died(name, proc, sandbox, answer)


def _failed(name: str, sandbox: Sandbox, answer: dict[str, Any]) -> ToolError:
    """The error a call ended with, from what its process said. That is untrusted (the
    tool may have written it): only names and text are read from it, and no class is
    looked up by the name it gives, but a built-in exception's."""
    stop = answer.get("stop")
    if isinstance(stop, list) and len(stop) == 2 and stop[0] in _STOPS:
        return _stopped(name, sandbox, stop[0], str(stop[1])[:_MAX_TEXT])
    rec = answer["error"] if isinstance(answer["error"], dict) else {}
    kind, message = str(rec.get("type", "Exception")), str(rec.get("message", ""))
    # The kind of fault the process saw in the class (a TimeoutError or a subclass of it:
    # retryable and a timeout; a ConnectionError: retryable), as outside a sandbox. The
    # tool could as well raise one, so trusting what it says costs nothing.
    fault = answer.get("fault")
    return ToolError(f"tool {name!r} raised {kind[:100]}: {message[:_MAX_TEXT]}",
                     retryable=fault in ("timeout", "connection"), timeout=fault == "timeout")


async def _died(name: str, proc: _Process, sandbox: Sandbox,
                answer: dict[str, Any] | None) -> ToolSandboxError:
    """The process ended (or garbled its answer) without answering: why?"""
    proc.kill()
    code = await proc.exit_status()
    cpu = None
    exit_report = next((m["exit"] for m in [answer, *proc.lines] if m and "exit" in m), None)
    if exit_report is None:  # no PID namespace: the tool process is the one we started
        proc._read()
        exit_report = next((m["exit"] for m in proc.lines if "exit" in m), None)
    if isinstance(exit_report, dict) and isinstance(exit_report.get("code"), int) and \
            isinstance(exit_report.get("cpu"), int | float):
        code, cpu = exit_report["code"], exit_report["cpu"]
    sig = -code if code is not None and code < 0 and -code in _SIGNALS else None
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu is not None
                                 and cpu >= sandbox.cpu_seconds):
        return _stopped(name, sandbox, "cpu_seconds", "it used up its CPU time", sig=sig)
    if answer is not None and "garbled" in answer:
        return _stopped(name, sandbox, "crashed", f"it wrote an unreadable answer "
                                                  f"({answer['garbled']!r})", code=code)
    end = proc.stderr_end()  # (read once: the memory check reads all of it, a crash its
    tail = end.splitlines()[-1] if end else ""  # last line)
    if out_of_memory(sig, end):
        return _stopped(name, sandbox, "memory_mb", "it ran out of memory (an allocation of "
                        "its native code failed)", sig=sig)
    how = f"killed by {signal.Signals(sig).name}" if sig else f"exit code {code}"
    return _stopped(name, sandbox, "crashed", how + (f"; last output: {tail}" if tail else ""),
                    code=None if sig else code, sig=sig)


def out_of_memory(sig: int | None, tail: str) -> bool:
    """Whether a tool process that died by ``sig`` with ``tail`` as the end of its stderr
    ran out of its memory limit in native code, which aborts where Python would raise
    MemoryError:
    Rust's allocator (pydantic_core writing a large result as JSON) says "memory
    allocation of N bytes failed", C++'s "std::bad_alloc"."""
    return sig == signal.SIGABRT and ("memory allocation of" in tail or "bad_alloc" in tail)


_STOPS = frozenset(get_args(SandboxStop))
_SIGNALS = frozenset(s.value for s in signal.Signals)
_MAX_TEXT = 2000
_VERB = {"network": "refused", "filesystem": "refused", "crashed": "crashed",
         "unavailable": "cannot run"}


def _stopped(name: str, sandbox: Sandbox, limit: SandboxStop, detail: str, *,
             code: int | None = None, sig: int | None = None) -> ToolSandboxError:
    value = sandbox.limit_value(limit)
    what = {"refused": "was refused by its sandbox", "crashed": "crashed in its sandbox",
            "cannot run": "cannot run in a sandbox here"}.get(
                _VERB.get(limit, ""), f"was stopped by its sandbox ({limit}={value:g})"
                if value is not None else "was stopped by its sandbox")
    return ToolSandboxError(f"tool {name!r} {what}: {detail}", limit=limit, value=value,
                            exit_code=code, signal=signal.Signals(sig).name if sig else None)
