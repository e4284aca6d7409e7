"""The capture store's SQLite file: the pragmas of every connection (:func:`sqlite_pragmas`: WAL, busy
timeout), and noticing that the file was deleted or replaced under a running process.

Several processes may open one new file at once (``serve --workers N``): switching a new database to WAL
answers "database is locked" at once, without waiting for the busy timeout, while another connection
switches it, so that switch is retried until the busy timeout runs out.

An open SQLite connection keeps writing into the file it opened, even after ``rm capture.db`` or a
``mv other.db capture.db``: every commit "succeeds" into an inode no one will ever read again. The
store remembers the file's identity (device and inode) when it opens it, compares it before each
transaction (then closes its connections and opens the file at its path again, recreating the
tables) and after each commit (then the rows just committed went into the old file: the commit is
reported as :class:`DatabaseFileReplaced`, a transient error, so the writer writes them again into
the new file and a feedback call answers 503 instead of "recorded").
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

logger = logging.getLogger(__name__)


class DatabaseFileReplaced(OSError):
    """The SQLite file was deleted or replaced while in use; what was just committed went into the old file.

    An ``OSError``, hence transient (:func:`~housing_platform.adapters.capture.errors.is_transient`):
    retrying writes into the file now at the path.
    """


class SqliteFileWatch:
    """The identity (device, inode) of the SQLite file a store has open, and how often it changed."""

    def __init__(self, path: Path):
        self.path = path
        self.identity: tuple[int, int] | None = None  # None until the store has opened the file
        self.reopened = 0  # times the file was found deleted or replaced (read by metrics)

    def _current(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def remember(self) -> None:
        """Record the identity of the file now at the path (right after the store opened or created it)."""
        self.identity = self._current()

    def changed(self) -> bool:
        """True if the file at the path is not the one the store opened (or is gone)."""
        return self.identity is not None and self._current() != self.identity

    def note_replaced(self) -> None:
        """Log loudly and forget the old identity; the caller then closes its connections."""
        current = self._current()
        self.reopened += 1
        self.identity = None
        logger.error(
            "capture database %s was %s while in use; closing the old file and opening the one at the path "
            "(tables recreated if needed); rows committed to the old file since the last check are written again",
            self.path,
            "deleted" if current is None else "replaced",
        )

    def remove_stale_wal(self) -> None:
        """After the old file's connections are closed: remove the ``-wal`` and ``-shm`` it left at the path.

        SQLite does not delete the WAL of a file renamed or unlinked while open, and would apply that
        WAL's frames (the old file's pages) to whatever database is opened at the path next.
        """
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def check_after_commit(self) -> None:
        """Raise :class:`DatabaseFileReplaced` if the file changed while a transaction ran."""
        if self.changed():
            raise DatabaseFileReplaced(f"capture database {self.path} was deleted or replaced during a write")


def sqlite_pragmas(busy_timeout_seconds: float):
    """The ``connect`` event listener of a SQLite engine: WAL, busy timeout, NORMAL sync, foreign keys."""

    def on_connect(dbapi_connection, _connection_record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
        # WAL lets monitoring read while the writers write; NORMAL sync is safe with WAL (a power
        # cut may lose the last commits, a process crash loses nothing).
        _switch_to_wal(cursor, time.monotonic() + busy_timeout_seconds)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def _switch_to_wal(cursor, deadline: float) -> None:
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:  # another connection is switching the new file: wait for it
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
