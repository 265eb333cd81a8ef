"""Stopping the long-running commands (``convoy worker``, ``convoy metrics serve``) on SIGINT
(Ctrl-C) or SIGTERM, whenever the signal arrives and however the process was started.

Python's own handling is not enough for a server: it turns SIGINT into a
``KeyboardInterrupt`` only if SIGINT was not ignored when the process started (a background
job of a non-interactive shell, and everything it starts, inherits it ignored: such a worker
never stops on SIGINT), raises it wherever the main thread happens to be (between
``asyncio.run`` creating its task and installing its own handler, the task is left running
on a loop that is then closed; inside ``Thread.start`` it breaks a lock), and SIGTERM ends
the process at once, without closing anything. :func:`stop_signals` handles both signals
itself for the duration of a command: the first one is noted, and the command's coroutine
is cancelled from inside its event loop (at once if it runs, as soon as it starts if not
yet), so the command closes what it opened and exits ``128 + signal`` (130, 143). A second
signal acts as Python's defaults do (stop now).

A command that runs sessions stops them gracefully first (:meth:`StopSignals.drain_on_stop`,
:meth:`convoy.Engine.drain`): the steps in flight finish and are journaled, no step starts
after, and the sessions are left unfinished for the next run. Cancelling a step in flight
would leave a non-idempotent one (a payment, a ticket) ``started`` with no outcome, which
only a person can settle. The command is cancelled only if it has not stopped
:data:`STOP_GRACE_S` seconds later, or at a second signal; the sessions whose steps were
still in flight then are noted (:attr:`StopSignals.abandoned`), for the command to say.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, TypeVar

import typer

from convoy._interrupt import early_stop

T = TypeVar("T")

#: The signals that stop a long-running command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: How long a command that drains its engine waits for the steps in flight to finish
#: before it cancels them (as long as Kubernetes waits after its SIGTERM, by default).
STOP_GRACE_S = 30.0


class Stopped(Exception):
    """A stop signal arrived: the command exits with :attr:`exit_code`. :attr:`result`:
    what the command's coroutine returned, when it returned (drained: the sessions it ran
    ended meanwhile, or were left unfinished), :data:`NOT_RETURNED` when it was cancelled
    or never ran."""

    def __init__(self, signum: int, result: Any = None, *, returned: bool = False) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum
        self.result = result if returned else NOT_RETURNED


#: :attr:`Stopped.result` of a command whose coroutine did not return.
NOT_RETURNED: Any = object()


class StopSignals:
    """The stop signal a command received, if any, and the coroutine it cancels."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.signum: int | None = None
        self.grace = STOP_GRACE_S
        self._say = say
        self._drains: list[Callable[[], None]] = []
        self._in_flight: list[Callable[[], list[str]]] = []
        #: The sessions in flight as the command was cancelled (a grace that ran out,
        #: ``--stop-grace 0``), by :meth:`drain_on_stop`'s ``in_flight``; ``None`` until then.
        self.abandoned: list[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._raise = False

    def drain_on_stop(self, drain: Callable[[], None], grace: float = STOP_GRACE_S,
                      in_flight: Callable[[], list[str]] | None = None) -> None:
        """At the first stop signal, call ``drain`` (an engine's :meth:`~convoy.Engine.drain`)
        instead of cancelling the command, which is cancelled only if it has not returned
        ``grace`` seconds later (0: at once, without draining). ``in_flight`` (the engine's
        :attr:`~convoy.Engine.in_flight`) is read as it is cancelled: :attr:`abandoned`."""
        self.grace = grace
        if grace > 0:
            self._drains.append(drain)
        if in_flight is not None:
            self._in_flight.append(in_flight)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of whatever it was doing: it only
        # takes note, and leaves the cancelling to the event loop.
        if self.signum is not None:
            return
        self.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one stops now
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        loop = self._loop
        if loop is not None:
            with suppress(RuntimeError):  # the loop closed meanwhile: run() checks signum
                loop.call_soon_threadsafe(self._stop)
        if self._raise:  # (in the main thread, inside a blocking read: see interruptible)
            self._raise = False
            raise Stopped(signum)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Inside the block, a stop signal raises :class:`Stopped` in the main thread at
        once (one that came before raises it on entry): for a blocking call outside the
        event loop, such as reading standard input from a pipe whose writer keeps it open.
        Python retries a read that a signal interrupted once the handler returns; the
        handler that only takes note would leave the command reading until the input
        ends. Only for code that can be abandoned anywhere (nothing written yet)."""
        self.check()
        self._raise = True
        try:
            yield
        finally:
            self._raise = False

    def _stop(self) -> None:
        """The first stop signal, in the event loop: drain, or cancel at once."""
        loop = self._loop
        if not self._drains or loop is None:
            self._cancel()
            return
        if self._say is not None:
            again = "press Ctrl-C again" if self.signum == signal.SIGINT else \
                "send the signal again"
            self._say(f"stopping: the steps in flight finish first (for at most "
                      f"{self.grace:g} s; {again} to stop them now); no new step starts")
        for drain in self._drains:
            drain()
        loop.call_later(self.grace, self._cancel)

    def _cancel(self) -> None:
        task = self._task
        if task is not None and not task.done():
            self.abandoned = [sid for in_flight in self._in_flight for sid in in_flight()]
            task.cancel()

    def check(self) -> None:
        """Raise :class:`Stopped` if a stop signal arrived."""
        if self.signum is not None:
            raise Stopped(self.signum)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """``asyncio.run(main)``, cancelled by a stop signal that arrives before or while it
        runs; then raises :class:`Stopped` (once ``main`` has closed what it opened)."""

        async def guarded() -> T:
            self._task = asyncio.current_task()
            self.check()  # a signal that came before the loop ran
            return await main

        try:
            with asyncio.Runner() as runner, _woken_by_signals(runner.get_loop()):
                self._loop = runner.get_loop()
                try:
                    result = runner.run(guarded())
                except asyncio.CancelledError:
                    self.check()
                    raise
                finally:
                    self._loop = self._task = None
        finally:
            if inspect.getcoroutinestate(main) == inspect.CORO_CREATED:
                main.close()  # stopped before it started: no "never awaited" warning
        if self.signum is not None:  # a signal that came as it ran (drained) or returned
            raise Stopped(self.signum, result, returned=True)
        return result

    def wait(self) -> None:
        """Block until a stop signal arrives; raises :class:`Stopped`."""
        self.run(asyncio.Event().wait())


@contextmanager
def _woken_by_signals(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Wake ``loop`` at every signal, whichever thread the kernel hands it to.

    A process-directed signal goes to any thread that does not block it. Python runs the
    handler in the main thread, at its next bytecode: a main thread asleep in the loop's
    ``epoll_wait`` with nothing scheduled (``convoy metrics serve``, whose HTTP server is
    another thread) would sleep on. Python writes each signal's number to its wakeup fd
    (:func:`signal.set_wakeup_fd`, as asyncio's own signal handlers use it); here the loop
    reads that fd, which wakes it, and the handler runs. Outside the main thread: nothing
    (only the main thread may set the fd, and the handlers are Python's)."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        reader.close()
        writer.close()
        yield
        return

    def drain() -> None:
        with suppress(OSError):
            while reader.recv(4096):
                pass

    try:
        loop.add_reader(reader.fileno(), drain)
    except NotImplementedError:  # (a loop that watches no socket: its own wakeup fd stays)
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        yield
        return
    try:
        yield
    finally:
        if not loop.is_closed():
            loop.remove_reader(reader.fileno())
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def not_kept(path: object, what: str, *, many: bool, redo: str) -> str:
    """The end of the line a stop while a command read ``path`` (``-``: standard input)
    prints: what was read from standard input is lost (nothing holds it but the process),
    so it must be sent again (``what``: the inputs, the payload; ``many``: a plural); a
    file can be read again by the same command, which then does ``redo``."""
    if str(path) == "-":
        return (f" (the {what} read from standard input {'are' if many else 'is'} not kept: "
                f"send {'them' if many else 'it'} again)")
    return f"; run the same command again to {redo}"


def read_or_stop(read: Callable[[], T], stopped: str, say: Callable[[str], None]) -> T:
    """``read()``, a blocking read a command makes before it does anything (its input from
    standard input, a pipe whose writer may keep it open), stopped at the first SIGINT or
    SIGTERM (see :meth:`StopSignals.interruptible`): then ``say(stopped)``, one line
    saying nothing was done, and exit ``128 + signal`` (130, 143). A signal that comes as
    the read ends stops the command too: it is not lost between the read and the command's
    own handling of signals, if any, after."""
    with stop_signals() as stop:
        try:
            with stop.interruptible():
                data = read()
        except Stopped:
            pass
    if stop.signum is not None:
        say(stopped)
        raise typer.Exit(128 + stop.signum)
    return data


@contextmanager
def stop_signals(say: Callable[[str], None] | None = None) -> Iterator[StopSignals]:
    """Handle SIGINT and SIGTERM as stop requests (see the module) inside the block; the
    previous handlers come back after it. Outside the main thread (a command called from
    another thread) Python's handling stays. ``say``: how to tell the user that a command
    that drains is stopping."""
    stop = StopSignals(say)
    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, stop._on_signal)
    except ValueError:  # not the main thread
        pass
    else:
        early = early_stop()  # (after the handlers: a signal from now on is theirs)
        if early is not None:  # a SIGINT while the command started, with SIGINT ignored
            stop._on_signal(early, None)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
