"""Module-level tools for tests/test_sandbox.py: a sandbox process imports its tool by name."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import struct
import sys
import time

from pydantic import BaseModel

import convoy

TIGHT = convoy.Sandbox(cpu_seconds=1, memory_mb=64, wall_seconds=60, max_processes=8)


class Point(BaseModel):
    x: int
    y: int


@convoy.tool(sandbox=TIGHT)
def add(a: int, b: int) -> int:
    """Adds, in a sandbox."""
    return a + b


@convoy.tool(sandbox=TIGHT)
def mirror(p: Point) -> Point:
    """Swaps the coordinates."""
    return Point(x=p.y, y=p.x)


@convoy.tool(sandbox=TIGHT)
def whoami() -> dict[str, object]:
    """Facts about the process the call runs in."""
    return {"pid": os.getpid(), "uid": os.getuid(), "cwd": os.getcwd(),
            "env": dict(os.environ), "argv": sys.argv}


@convoy.tool(sandbox=TIGHT)
def hog() -> int:
    """Allocates without end."""
    chunks = []
    while True:
        chunks.append(bytearray(16 * 2**20))


@convoy.tool(sandbox=TIGHT)
def spin() -> int:
    """Spins forever."""
    n = 0
    while True:
        n += 1


@convoy.tool(sandbox=TIGHT)
def bomb() -> int:
    """Forks without end."""
    while True:
        os.fork()


@convoy.tool(sandbox=TIGHT)
def escape() -> int:
    """Starts a process that leaves the call's process group and lives on."""
    if os.fork() == 0:
        os.setsid()
        time.sleep(3600)
        os._exit(0)
    return 1


@convoy.tool(sandbox=TIGHT)
def dial(port: int) -> str:
    """Opens a TCP connection to a loopback port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(100).decode()


@convoy.tool(sandbox=TIGHT)
def secret(name: str) -> str:
    """Reads an environment variable."""
    return os.environ.get(name, "<unset>")


@convoy.tool(sandbox=TIGHT)
def scribble(path: str) -> str:
    """Writes a file."""
    with open(path, "w") as f:
        f.write("pwned")
    return path


@convoy.tool(sandbox=TIGHT)
def die(code: int) -> int:
    """Exits at once, without answering."""
    os._exit(code)


@convoy.tool(sandbox=TIGHT)
def vanish() -> int:
    """Kills its own process."""
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@convoy.tool(sandbox=TIGHT)
def native_dial(port: int) -> int:
    """Opens a TCP socket through libc, around Python's socket module."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket() failed")
    addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", port, b"\x7f\0\0\1")
    if libc.connect(fd, addr, len(addr)) < 0:
        raise OSError(ctypes.get_errno(), "connect() failed")
    return fd


@convoy.tool(sandbox=TIGHT)
def native_scribble(path: str) -> int:
    """Creates a file through libc, around Python's open()."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(path.encode(), os.O_WRONLY | os.O_CREAT, 0o644)
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"open({path!r}) failed")
    return fd


@convoy.tool(sandbox=TIGHT)
def peek(path: str) -> str:
    """Reads a file."""
    with open(path) as f:
        return f.read()


@convoy.tool(sandbox=TIGHT)
def notes(text: str) -> dict[str, str]:
    """Writes and reads back a file in its working directory."""
    with open("notes.txt", "w") as f:
        f.write(text)
    with open("notes.txt") as f:
        return {"text": f.read(), "cwd": os.getcwd()}


class Settings(BaseModel):
    region: str


@convoy.tool(sandbox=TIGHT)
def region(ctx: convoy.ToolContext[Settings], city: str) -> str:
    """Uses JSON deps that cross into the sandbox."""
    return f"{city}@{ctx.deps.region}/{ctx.tenant}/{ctx.idempotency_key}"


@convoy.tool(sandbox=TIGHT)
async def async_add(a: int, b: int) -> int:
    """An async tool in a sandbox."""
    await asyncio.sleep(0)
    return a + b


@convoy.tool(sandbox=TIGHT)
def fails(reason: str) -> int:
    """Raises an ordinary error."""
    raise ValueError(reason)


@convoy.tool(sandbox=TIGHT)
def gives_up(service: str) -> int:
    """Raises ``TimeoutError`` itself (a downstream it waited for did not answer)."""
    raise TimeoutError(f"{service} did not answer")


class CrmTimeout(TimeoutError):
    """A client library's own timeout: a subclass of ``TimeoutError``."""


class NotReallyATimeout(Exception):
    """An unrelated class that only shares the built-in's name."""


NotReallyATimeout.__name__ = NotReallyATimeout.__qualname__ = "TimeoutError"


@convoy.tool(sandbox=TIGHT)
def crm_gives_up(service: str) -> int:
    """Raises a subclass of ``TimeoutError``."""
    raise CrmTimeout(f"{service} did not answer")


@convoy.tool(sandbox=TIGHT)
def named_like_a_timeout(service: str) -> int:
    """Raises a class named ``TimeoutError`` that is not one."""
    raise NotReallyATimeout(f"{service} said no")


@convoy.tool(sandbox=convoy.Sandbox(cpu_seconds=5, wall_seconds=0.5))
def slow_nap() -> str:
    """Sleeps far past its wall-clock limit (it uses no CPU)."""
    time.sleep(3600)
    return "late"


@convoy.tool(sandbox=convoy.Sandbox(wall_seconds=600))
def sleeper() -> str:
    """Sleeps until it is cancelled."""
    time.sleep(3600)
    return "late"


@convoy.tool(sandbox=convoy.Sandbox(wall_seconds=600, max_concurrent=2))
def pair_sleeper() -> str:
    """Sleeps until it is cancelled; two calls at most run at once."""
    time.sleep(3600)
    return "late"


@convoy.tool(sandbox=convoy.Sandbox(env={"GREETING": "hello"}, warm=1))
def greet(name: str) -> dict[str, str]:
    """Uses an environment variable it was given; runs on a warm process."""
    return {"text": f"{os.environ['GREETING']}, {name}", "cwd": os.getcwd()}


@convoy.tool(sandbox=TIGHT)
def forge(module: str) -> int:
    """Writes a forged answer on every pipe it holds, naming a class for the engine to
    import, then exits."""
    import json
    import stat

    line = json.dumps({"error": {"type": "Forged", "message": "forged", "module": module,
                                 "qualname": "Forged", "args": ["x"]}}).encode() + b"\n"
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, line)
        except OSError:
            pass
    os._exit(0)


@convoy.tool(sandbox=TIGHT)
def new_namespace() -> int:
    """Tries to make a user namespace (capabilities inside it); returns the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
        return 0
    return ctypes.get_errno()


@convoy.tool(sandbox=TIGHT)
def native_hog() -> int:
    """Holds 40 MB, then has native code (pydantic_core's JSON writer, in Rust) ask for as
    much again: past the 64 MB limit, Rust's allocator aborts the process where Python
    would raise MemoryError."""
    from pydantic_core import to_json

    text = "x" * (40 * 2**20)
    return len(to_json([text, text]))
