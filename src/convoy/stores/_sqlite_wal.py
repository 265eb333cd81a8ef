"""WAL checkpoints of the SQLite store, on a thread of their own."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class _Checkpointer:
    """Copies the WAL back into the database from a thread, a few times a second.

    A PASSIVE checkpoint never waits, so it cannot stall a commit; the writer itself rewinds
    the WAL once it passes the limit (see ``SQLiteStore._after_commit``), which is then
    cheap because this thread has already copied almost all of it.
    """

    def __init__(self, path: Path, interval: float = 0.25) -> None:
        self._path = path
        self._interval = interval
        #: Held around each checkpoint: whoever holds it knows none is running (SQLite runs
        #: one checkpoint at a time, and another one's TRUNCATE would report busy).
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convoy-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(self._interval):
                try:
                    with self.lock:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError:
                    continue  # busy: the next round catches up
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
