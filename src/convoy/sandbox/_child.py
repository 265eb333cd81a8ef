"""The sandbox process: started as ``python -I -B`` by ``convoy.sandbox._runner``.

It reads one setup line, builds its prison and says ``ready``; reads one call, runs it and
answers; then exits. Lines are JSON on private copies of stdin/stdout (the tool's own
``print`` goes to stderr). Order matters:

1. namespaces (network, PID, mount, IPC, UTS; a user namespace when not root), if the
   kernel allows: an *outer* process stays in the host PID namespace and waits, an *init*
   (PID 1 of the new namespace) reaps and reports how the tool process ended, and the tool
   process runs the call. When init dies, the kernel kills every process of the call.
2. the tool's module is imported (the developer's code, before any argument is seen);
3. limits are set relative to what the loaded interpreter uses: ``RLIMIT_CPU``,
   ``RLIMIT_AS``, ``RLIMIT_FSIZE``, ``RLIMIT_NPROC``, no core dumps; as root, the process
   then becomes a user id of its own for the call (no capabilities, and the process count
   is per user id: root is exempt from ``RLIMIT_NPROC``);
4. Landlock (file system, TCP, signals) and seccomp (no new namespaces, no ``socket()``),
   for good;
5. an audit hook that refuses, *typed*, what Python code asks for outside the sandbox
   (the kernel layers above refuse it anyway; the hook only names it).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import inspect
import json
import math
import os
import resource
import runpy
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

_W_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_READ_ROOTS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc",
               "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


class _Refused(PermissionError):
    """What the audit hook raises (a ``PermissionError``, as the kernel's refusal is)."""


class _Prison:
    """The call's refusals so far, and the audit hook that records them."""

    def __init__(self, tmpdir: str, readable: list[str], network: bool) -> None:
        self.tmpdir = os.path.realpath(tmpdir)
        self.readable = [os.path.realpath(p) for p in readable] + [self.tmpdir]
        self.writable = [self.tmpdir, "/dev/null"]
        self.network = network
        self.refusal: tuple[str, str] | None = None
        self.pid = os.getpid()

    def refuse(self, limit: str, detail: str) -> None:
        if self.refusal is None and os.getpid() == self.pid:
            self.refusal = (limit, detail)
        raise _Refused(errno.EACCES, f"refused by the sandbox: {detail}")

    def _check_path(self, path: Any, write: bool) -> None:
        if isinstance(path, int) or path is None:
            return  # a file descriptor: the kernel checked it when it was opened
        p = os.path.realpath(os.fsdecode(path))
        roots = self.writable if write else self.readable
        if not any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots):
            what = "write" if write else "read"
            where = "outside its temporary directory" if write else "outside its read paths"
            self.refuse("filesystem", f"{what} of {p!r} {where}")

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, _mode, flags = args
            self._check_path(path, write=bool(flags & _W_FLAGS))
        elif event in ("os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod",
                       "os.chown", "os.utime"):
            self._check_path(args[0], write=True)
        elif event in ("os.rename", "os.link"):
            self._check_path(args[0], write=True)
            self._check_path(args[1], write=True)
        elif event == "os.symlink":
            self._check_path(args[1], write=True)
        elif not self.network and event == "socket.__new__" and args[1] != socket.AF_UNIX:
            self.refuse("network", f"socket(family={args[1]}): the network is disabled")
        elif not self.network and event in ("socket.getaddrinfo", "socket.gethostbyname"):
            self.refuse("network", f"name lookup of {args[0]!r}: the network is disabled")

    def watch_forks(self) -> None:
        """Name a refused fork as the ``max_processes`` limit (``RLIMIT_NPROC`` refuses it;
        the wrappers only record why)."""
        import _posixsubprocess
        import threading

        def wrap(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
            def wrapper(*a: Any, **kw: Any) -> Any:
                try:
                    return fn(*a, **kw)
                except (BlockingIOError, RuntimeError) as e:
                    if isinstance(e, RuntimeError) and "thread" not in str(e):
                        raise
                    self.refuse("max_processes", f"{what} refused: {e}")
            return wrapper

        os.fork = wrap(os.fork, "fork")
        os.posix_spawn = wrap(os.posix_spawn, "posix_spawn")
        os.posix_spawnp = wrap(os.posix_spawnp, "posix_spawnp")
        _posixsubprocess.fork_exec = wrap(_posixsubprocess.fork_exec, "subprocess")
        threading._start_new_thread = wrap(  # type: ignore[attr-defined]
            threading._start_new_thread, "new thread")  # type: ignore[attr-defined]


def _send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _mem_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _namespaces(setup: dict[str, Any], out: int) -> list[str]:
    """Enter new namespaces, fork outer/init/tool; return (in the tool process) what was
    applied. Only the tool process returns."""
    from convoy.sandbox import _linux as L

    flags = L.CLONE_NEWPID | L.CLONE_NEWNS | L.CLONE_NEWIPC | L.CLONE_NEWUTS
    if not setup["sandbox"]["network"]:
        flags |= L.CLONE_NEWNET
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    try:
        L.unshare(flags if root else flags | 0x10000000)  # CLONE_NEWUSER
    except OSError as e:
        return [f"no namespaces ({e.strerror})"]
    if not root:  # the same ids inside; setgroups must be denied before gid_map
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    init = os.fork()
    if init:  # outer: wait for init, end as it did
        _, status = os.waitpid(init, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    L.die_with_parent(signal.SIGKILL)
    L.mount_private_proc()
    L.expose([*setup["read_paths"], *setup["sys_path"], os.getcwd()])
    tool = os.fork()
    if tool:  # init: reap everything; report how the tool process ended, then end all
        while True:
            pid, status, usage = os.wait4(-1, 0)
            if pid == tool:
                break
        code = os.waitstatus_to_exitcode(status)
        _send(out, {"exit": {"code": code, "cpu": usage.ru_utime + usage.ru_stime}})
        os._exit(0)
    L.die_with_parent(signal.SIGKILL)
    net = "" if setup["sandbox"]["network"] else "network, "
    return [f"namespaces ({net}pid, mount, ipc, uts)"]


def _load_tool(ref: dict[str, Any]) -> Any:
    from convoy.definitions._tools import Tool, tool

    if ref["module"] == "__main__":
        namespace = runpy.run_path(ref["main_file"], run_name="__convoy_sandbox__")
        obj: Any = namespace[ref["qualname"].split(".")[0]]
        for part in ref["qualname"].split(".")[1:]:
            obj = getattr(obj, part)
    else:
        obj = __import__(ref["module"], fromlist=["_"])
        for part in ref["qualname"].split("."):
            obj = getattr(obj, part)
    if isinstance(obj, Tool):
        return obj
    return tool(obj)  # the plain function, wrapped by a call of ``convoy.tool(...)``


def _lock_down(setup: dict[str, Any], prison: _Prison, isolated: bool) -> list[str]:
    """Limits, user id, Landlock, seccomp, audit hook (``isolated``: in new namespaces)."""
    from convoy.sandbox import _linux as L

    sb = setup["sandbox"]
    applied: list[str] = []
    # What the standard library imports lazily on common paths (a socket's host name goes
    # through the idna codec), loaded while the whole installation is still readable.
    import encodings.idna  # noqa: F401

    gc.collect()
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + sb["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    address = _mem_kb("VmSize") * 1024 + sb["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (address, address))
    resource.setrlimit(resource.RLIMIT_FSIZE, (sb["file_mb"] * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (sb["max_processes"],) * 2)
    applied.append("rlimits (cpu, address space, file size, processes)")
    uid = setup["uid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        applied.append(f"user id {uid}")
    elif not isolated:
        raise OSError(errno.EPERM, "max_processes needs root or a user namespace: "
                                   "RLIMIT_NPROC counts every process of the engine's user")
    abi = L.landlock(read=prison.readable, write=prison.writable, network=sb["network"])
    applied.append(f"landlock ABI {abi}")
    try:
        L.seccomp_filter(network=sb["network"])
        applied.append("seccomp (no new namespaces" + ("" if sb["network"] else ", no socket")
                       + ")")
    except OSError:
        if not sb["network"] and not isolated:  # no network namespace either: no sandbox
            raise
    prison.watch_forks()
    sys.addaudithook(prison.hook)
    return applied


def _run(tool: Any, call: dict[str, Any]) -> Any:
    from convoy.definitions._tools import ToolContext
    from convoy.sandbox._crossing import deps_adapter

    args = tool.validate_args(call["args"])
    kwargs = {name: getattr(args, name) for name in type(args).model_fields}
    pos: tuple[Any, ...] = ()
    if tool.takes_ctx:
        ctx = dict(call["ctx"])
        adapter = deps_adapter(tool.fn)
        if adapter is not None:
            ctx["deps"] = adapter.validate_json(ctx["deps"])
        pos = (ToolContext(**ctx),)
    result = tool.fn(*pos, **kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    if tool.result_adapter is not None:
        result = tool.result_adapter.validate_python(result)
    return tool.dump_result(result)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _stop_of(exc: BaseException, prison: _Prison) -> tuple[str, str] | None:
    """What limit or refusal ended the call, if one did."""
    if prison.refusal is not None:
        return prison.refusal
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError):
            return ("memory_mb", "MemoryError")
        if isinstance(seen, OSError) and seen.errno == errno.EFBIG:
            return ("file_mb", str(seen))
        seen = seen.__cause__ or seen.__context__
    return None


def main() -> None:
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # the tool's print() must not corrupt the answer
    setup = json.loads(inp.readline())
    sys.path[:] = setup["sys_path"]
    applied = _namespaces(setup, out) if setup["namespaces"] else []
    isolated = bool(applied) and applied[0].startswith("namespaces")
    me = os.getpid()
    try:
        tool = _load_tool(setup["tool"])
        readable = [*_READ_ROOTS, *setup["read_paths"]]
        prison = _Prison(os.getcwd(), readable, setup["sandbox"]["network"])
        applied += _lock_down(setup, prison, isolated)
    except BaseException as e:  # reported to the engine, then exit
        _send(out, {"setup_error": f"{type(e).__name__}: {e}"})
        os._exit(70)
    _send(out, {"ready": applied})
    line = inp.readline()
    if not line:
        os._exit(0)
    try:
        answer: dict[str, Any] = {"ok": _run(tool, json.loads(line))}
    except BaseException as e:  # everything goes back as the answer
        if os.getpid() != me:
            os._exit(1)  # a forked copy of this process: it has nothing to answer
        from convoy._errors import error_to_record

        stop = _stop_of(e, prison)
        # What only this side can tell from the class itself (a subclass of TimeoutError
        # is a timeout; a class named so is not): the kind of fault, as outside a sandbox.
        fault = "timeout" if isinstance(e, TimeoutError) else \
            "connection" if isinstance(e, ConnectionError) else None
        answer = {"error": error_to_record(e), "stop": stop, "fault": fault}
    if os.getpid() != me:
        os._exit(0)
    _send(out, answer)
    os._exit(0)


if __name__ == "__main__":
    main()
