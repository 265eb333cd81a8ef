"""Where synchronous tools run: a bounded pool of daemon threads, or a child process.

``asyncio.to_thread`` is the wrong home for user code that may hang: a timeout cancels only
the ``await``, the thread keeps its slot in the loop's default executor, and
``asyncio.run`` joins that executor at exit, so one hung tool eventually times out every
later sync tool and keeps the process alive after the engine closed. Here:

- every sync tool call runs on a daemon thread of a :class:`ToolThreads` pool (at most
  ``max_workers`` at once; callers past that wait their turn), so a stuck thread never
  blocks interpreter exit;
- a call that was abandoned (its timeout fired) keeps its slot until the function returns,
  but one tool may hold at most ``max_stuck_per_tool`` such slots: further calls of *that*
  tool fail at once with :class:`ToolThreadsExhausted`, so a hung tool cannot starve the
  others; when every slot is held by abandoned calls, every caller gets that error
  instead of waiting for its own timeout;
- ``@convoy.tool(isolate="process")`` runs the function in a child process that is killed
  (SIGKILL) when the call is cancelled or times out: nothing of a hung tool survives.
"""

from __future__ import annotations

import asyncio
import contextvars
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.context import ForkContext, SpawnContext
from typing import Any

from convoy._errors import ToolError, UserError


class ToolThreadsExhausted(ToolError):
    """No thread may run this sync tool: its earlier calls timed out and are still running
    (a hung tool), or every thread of the pool is held by such calls. Retryable: the slots
    come back when the stuck functions return."""

    kind = "tool_threads_exhausted"


class ToolThreads:
    """A bounded pool of daemon threads for synchronous tools.

    Args:
        max_workers: threads running tool functions at once; more calls wait (FIFO).
        max_stuck_per_tool: abandoned (timed-out, still running) calls one tool may hold
            before its further calls fail at once with :class:`ToolThreadsExhausted`.
    """

    def __init__(self, max_workers: int = 32, *, max_stuck_per_tool: int = 4) -> None:
        if max_workers < 1 or max_stuck_per_tool < 1:
            raise UserError("ToolThreads max_workers and max_stuck_per_tool must be >= 1")
        self.max_workers = max_workers
        self.max_stuck_per_tool = max_stuck_per_tool
        self._lock = threading.Lock()
        self._running = 0  # slots held, by live and abandoned calls
        self._stuck: dict[str, int] = {}  # tool -> abandoned calls still running
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self.exhausted = 0

    @property
    def stuck(self) -> int:
        """Calls abandoned by their caller (timed out) whose function is still running."""
        with self._lock:
            return sum(self._stuck.values())

    def _refuse(self, name: str, why: str) -> ToolThreadsExhausted:
        self.exhausted += 1
        return ToolThreadsExhausted(
            f"tool {name!r} cannot run: {why}; a sync tool that may hang should be declared "
            f"with @convoy.tool(isolate='process')", retryable=True)

    def _check(self, name: str) -> None:
        """Under the lock: refuse a call that could only wait for stuck threads."""
        if self._stuck.get(name, 0) >= self.max_stuck_per_tool:
            raise self._refuse(name, f"{self._stuck[name]} earlier calls timed out and are "
                                     f"still running")
        if self._running >= self.max_workers and \
                sum(self._stuck.values()) >= self.max_workers:
            raise self._refuse(name, f"all {self.max_workers} sync-tool threads are held by "
                                     f"calls that timed out and are still running")

    def _release(self) -> None:
        """A slot came free: hand it to the first waiter still waiting, or drop it."""
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                if not fut.done() and not loop.is_closed():
                    loop.call_soon_threadsafe(_grant, fut, self)
                    return
            self._running -= 1

    def _fail_waiters(self) -> None:
        """Under the lock, after a call was abandoned: if every slot is now stuck, waiters
        would wait for nothing; tell them."""
        if sum(self._stuck.values()) < self.max_workers:
            return
        while self._waiters:
            loop, fut = self._waiters.popleft()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_fail, fut, self._refuse(
                    "(waiting)", f"all {self.max_workers} sync-tool threads are held by calls that "
                         f"timed out and are still running"))

    async def run(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on a daemon thread of the pool (with the caller's
        context variables) and return its result."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._check(name)
            fut: asyncio.Future[None] | None = None
            if self._running < self.max_workers:
                self._running += 1
            else:
                fut = loop.create_future()
                self._waiters.append((loop, fut))
        if fut is not None:
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._release()  # granted, then cancelled before it could start
                raise
        done: asyncio.Future[Any] = loop.create_future()
        state = {"abandoned": False, "finished": False}
        ctx = contextvars.copy_context()

        def work() -> None:
            try:
                result = ctx.run(fn, *args, **kwargs)
            except BaseException as e:
                outcome: tuple[bool, Any] = (False, e)
            else:
                outcome = (True, result)
            with self._lock:
                state["finished"] = True
                if state["abandoned"]:
                    self._stuck[name] -= 1
            self._release()
            if not loop.is_closed():
                with suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                    loop.call_soon_threadsafe(_settle, done, outcome)

        threading.Thread(target=work, name=f"convoy-tool-{name}", daemon=True).start()
        try:
            return await done
        except asyncio.CancelledError:
            with self._lock:  # (``done`` itself was cancelled with us: ask the thread)
                if not state["finished"]:
                    state["abandoned"] = True
                    self._stuck[name] = self._stuck.get(name, 0) + 1
                    self._fail_waiters()
            raise


def _grant(fut: asyncio.Future[None], pool: ToolThreads) -> None:
    if fut.done():  # cancelled meanwhile: the slot goes to the next waiter
        pool._release()
    else:
        fut.set_result(None)


def _fail(fut: asyncio.Future[None], error: BaseException) -> None:
    if not fut.done():
        fut.set_exception(error)


def _settle(fut: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if fut.done():
        return
    ok, value = outcome
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


DEFAULT_TOOL_THREADS = ToolThreads(min(32, (os.cpu_count() or 1) + 4))


# -- process isolation ---------------------------------------------------------------------

def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> None:
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:
        try:
            conn.send((False, e))
        except Exception:
            conn.send((False, RuntimeError(f"{type(e).__name__}: {e}")))
    else:
        conn.send((True, result))
    conn.close()


def _context() -> ForkContext | SpawnContext:
    # fork keeps closures and locally defined tools usable; spawn where fork does not exist
    # (the function and its arguments must then be importable and picklable).
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


async def run_in_process(name: str, fn: Callable[..., Any], /, *args: Any,
                         **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` in a child process; kill it (SIGKILL) if the call is
    cancelled (a timeout) before it answered. The result and any exception must pickle."""
    mp = _context()
    recv, send = mp.Pipe(duplex=False)
    proc = mp.Process(target=_child, args=(send, fn, args, kwargs), daemon=True,
                      name=f"convoy-tool-{name}")
    proc.start()
    send.close()
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[tuple[bool, Any]] = loop.create_future()

    def wait() -> None:  # a daemon thread, ended by the answer or by the child's death
        try:
            outcome: tuple[bool, Any] = recv.recv()
        except (EOFError, OSError):
            proc.join()
            outcome = (False, ToolError(f"tool {name!r}: its process ended without an "
                                        f"answer (exit code {proc.exitcode})"))
        finally:
            recv.close()
        proc.join()
        if not loop.is_closed():
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, answer, (True, outcome))

    threading.Thread(target=wait, name=f"convoy-tool-{name}-wait", daemon=True).start()
    try:
        ok, value = await answer
    except asyncio.CancelledError:
        proc.kill()  # the waiting thread sees EOF, reaps the child and ends
        raise
    if ok:
        return value
    raise value
