"""The capture database: :class:`CaptureStore` owns the engine (SQLite in WAL mode by default,
PostgreSQL via ``HOUSING_CAPTURE_URL``), creates its tables on first use so a server can start while
the database is down, inserts rows synchronously (the
:class:`~housing_platform.adapters.capture.writer.CaptureWriter` calls it off the request path),
records feedback all or nothing with precise errors the API turns into 4xx, and has the readers
monitoring uses.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pandas as pd
from sqlalchemy import Table, create_engine, event, func, inspect, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.schema import CreateSchema

from housing_platform.adapters.capture.bulk import copy_binary_body
from housing_platform.adapters.capture.bulk_insert import insert_batch
from housing_platform.adapters.capture.errors import (
    CaptureStoreUnavailable,
    DuplicateFeedback,
    UnknownRequestIds,
    is_transient,
)
from housing_platform.adapters.capture.migrations import add_missing_capture_columns
from housing_platform.adapters.capture.records import CaptureRecord, FeedbackReceipt
from housing_platform.adapters.capture.sqlite_file import SqliteFileWatch, sqlite_pragmas
from housing_platform.adapters.capture.tables import captures_table, feedback_table, metadata
from housing_platform.core.schema import NUMERIC_FEATURE_COLUMNS, TARGET_COLUMN

# Request ids per IN (...) clause when looking ids up (well under SQLite's bound-parameter limit).
ID_CHUNK = 500


class PendingCaptures(Protocol):
    """What the store asks of a registered writer before recording feedback."""

    def pending_among(self, request_ids: Iterable[str]) -> set[str]: ...

    def flush(self, timeout: float = ...) -> bool: ...


class CaptureStore:
    """The capture database: schema, feedback and readers. Thread-safe; one per process is enough.

    Nothing touches the database until it is first used, so a server can start while PostgreSQL
    is still down; tables (and the PostgreSQL ``schema``, if given) are created on first use.

    ``schema`` (PostgreSQL only) puts both tables in that schema instead of the default one: tests
    use it to isolate runs.

    Feedback can arrive for a request whose capture is still queued in a writer (a client that posts
    the true value right after its prediction). Every writer registers itself
    (:meth:`register_writer`) and tracks the request ids it has accepted but not yet settled;
    :meth:`record_feedback` asks the writers first and, if any of the ids are still pending, flushes
    them before checking the table. That costs nothing in the common case and needs no cooperation
    from the API. It only covers writers in the same process: with several server processes, a
    capture pending in another process is reported as unknown.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        schema: str | None = None,
        busy_timeout_seconds: float = 5.0,
        connect_timeout_seconds: float = 5.0,
        **engine_kwargs,
    ):
        self.url = make_url(url)
        self.schema = schema
        is_sqlite = self.url.get_backend_name() == "sqlite"
        database = self.url.database or ""
        file_based = is_sqlite and database not in ("", ":memory:") and not database.startswith("file:")
        self._sqlite_file = Path(database).expanduser() if file_based else None
        self.file_watch = SqliteFileWatch(self._sqlite_file) if self._sqlite_file is not None else None
        # The bulk path by driver: SQLite executemany, psycopg2 COPY; anything else SQLAlchemy's insert().
        self._bulk = "sqlite" if is_sqlite else "copy" if self.url.get_driver_name() == "psycopg2" else None
        if is_sqlite:
            engine_kwargs.setdefault("connect_args", {}).setdefault("timeout", busy_timeout_seconds)
        else:
            engine_kwargs.setdefault("pool_pre_ping", True)
            if self.url.get_backend_name() == "postgresql" and "connect_timeout" not in self.url.query:
                engine_kwargs.setdefault("connect_args", {}).setdefault(
                    "connect_timeout", max(1, math.ceil(connect_timeout_seconds))
                )
        self._base_engine = create_engine(self.url, **engine_kwargs)
        if is_sqlite:
            event.listen(self._base_engine, "connect", sqlite_pragmas(busy_timeout_seconds))
        self.engine: Engine = (
            self._base_engine.execution_options(schema_translate_map={None: schema}) if schema else self._base_engine
        )
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._writers: weakref.WeakSet[PendingCaptures] = weakref.WeakSet()

    def __repr__(self) -> str:
        schema = f", schema={self.schema!r}" if self.schema else ""
        return f"CaptureStore({self.url.render_as_string(hide_password=True)!r}{schema})"

    def __enter__(self) -> CaptureStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.dispose()

    def dispose(self) -> None:
        """Close pooled connections (writers using this store should be closed first)."""
        self._base_engine.dispose()

    # -- writers of this process ---------------------------------------------------------------

    def register_writer(self, writer: PendingCaptures) -> None:
        """Have :meth:`record_feedback` flush ``writer`` first when it holds one of the ids.

        Held weakly: a writer that is garbage-collected unregisters itself.
        """
        self._writers.add(writer)

    def unregister_writer(self, writer: PendingCaptures) -> None:
        self._writers.discard(writer)

    # -- schema ------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the folder (SQLite), schema (PostgreSQL) and tables if absent. Cheap once done.

        A SQLite file deleted or replaced since it was opened is noticed here (one ``stat``): the
        pooled connections to the old file are closed and the file at the path is opened again.
        """
        watch = self.file_watch
        if watch is not None and watch.changed():
            watch.note_replaced()
            self._base_engine.dispose()
            watch.remove_stale_wal()
            self._schema_ready = False
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            if self._sqlite_file is not None:
                self._sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            for attempt in range(3):  # several processes (serve --workers N) may start on one new store
                try:
                    self._create_schema()
                    break
                except sa_exc.DBAPIError as error:
                    # Another process created the same objects between our check and our CREATE: check again.
                    if attempt == 2 or not _created_meanwhile(error):
                        raise
            if watch is not None:
                watch.remember()
            self._schema_ready = True

    def _create_schema(self) -> None:
        with self.engine.begin() as conn:
            if self.schema:
                conn.execute(CreateSchema(self.schema, if_not_exists=True))
            metadata.create_all(conn)
            _add_feedback_token_column(conn, self.schema)
            add_missing_capture_columns(conn, self.schema)

    def _schema_lost(self) -> None:
        """After a connection error, check (and recreate) the tables before the next write."""
        self._schema_ready = False

    # -- writes ------------------------------------------------------------------------------

    def insert_captures(self, records: Sequence[CaptureRecord], *, skip_existing: bool = False) -> None:
        """Insert rows synchronously in one transaction (the writer thread's path; also batch jobs).

        ``skip_existing``: rows whose request id is already stored are skipped, not an error (draining
        the spill, which a crash may have left partly drained).

        Errors propagate unchanged (:func:`~housing_platform.adapters.capture.errors.is_transient`
        tells whether retrying can help); after a transient one the next call checks the tables
        again, since the database may have been recreated empty meanwhile.
        """
        if not records:
            return
        try:
            self.ensure_schema()
            with self.engine.begin() as conn:
                insert_batch(self.engine, conn, self._bulk, records, self.schema, skip_existing=skip_existing)
            if self.file_watch is not None:
                self.file_watch.check_after_commit()
        except Exception as exc:
            if is_transient(exc):
                self._schema_lost()
            raise

    @property
    def preferred_batch_rows(self) -> int:
        """Rows per write that suit this store (``capture_batch_rows`` unset): PostgreSQL's ``COPY`` commits
        one WAL flush per batch (1,000-row batches wrote about half as fast as 5,000); SQLite spends
        more CPU per row in 5,000-row transactions than in 1,000-row ones (10.8 vs 7.4 µs, measured)."""
        return 5_000 if self._bulk == "copy" else 1_000

    def batch_encoder(self):
        """What the writer's builder thread may encode a batch with ahead of :meth:`insert_captures`:
        the binary COPY rows for PostgreSQL via psycopg2; None for the other paths."""
        return copy_binary_body if self._bulk == "copy" else None

    def record_feedback(
        self,
        items: Iterable[tuple[str, float]],
        *,
        received_at: datetime | None = None,
        pending_wait_seconds: float = 2.0,
        token_id: str | None = None,
    ) -> FeedbackReceipt:
        """Record true values for captured requests, all or nothing.

        Raises :class:`UnknownRequestIds` if any id has no capture (checked first),
        :class:`DuplicateFeedback` if any id already has feedback or appears twice in ``items``,
        :class:`CaptureStoreUnavailable` if the store is unreachable, and ``ValueError`` for a
        value that is not a finite number. On any error nothing is recorded.

        Ids whose capture is still queued in a writer of this process are flushed first (waiting at
        most ``pending_wait_seconds``; if they are still not written, the store is down:
        :class:`CaptureStoreUnavailable`). Captures queued in *another* process cannot be seen: they
        are reported unknown, so a client should treat "unknown" right after scoring as retryable.
        ``token_id`` (the API token that sent them, never its secret) is stored in ``feedback_token``.
        """
        received_at = received_at or datetime.now(UTC)
        rows: list[tuple[str, float]] = []
        for request_id, value in items:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(
                    f"feedback for request id {request_id!r}: {TARGET_COLUMN} must be a finite number, got {value!r}"
                )
            rows.append((str(request_id), value))
        if not rows:
            return FeedbackReceipt(recorded=0, received_at=received_at)
        ids = [request_id for request_id, _ in rows]
        unique_ids = set(ids)
        repeated = {i for i, n in Counter(ids).items() if n > 1} if len(unique_ids) < len(ids) else set()

        self._flush_pending(unique_ids, pending_wait_seconds)
        try:
            self.ensure_schema()
            try:
                with self.engine.begin() as conn:
                    self._check_feedback(conn, unique_ids, repeated)
                    conn.execute(
                        feedback_table.insert(),
                        [
                            {"request_id": request_id, TARGET_COLUMN: value, "received_at": received_at,
                             "feedback_token": token_id}
                            for request_id, value in rows
                        ],
                    )
                if self.file_watch is not None:
                    self.file_watch.check_after_commit()
            except sa_exc.IntegrityError:
                # A concurrent call recorded some of the same ids (or a capture vanished) between
                # our check and our insert: say which, precisely.
                with self.engine.connect() as conn:
                    self._check_feedback(conn, unique_ids, repeated)
                raise
        except sa_exc.DBAPIError as exc:
            if is_transient(exc):
                self._schema_lost()
                raise CaptureStoreUnavailable(
                    f"capture store unreachable while recording feedback: {exc.orig}"
                ) from exc
            raise
        except OSError as exc:
            self._schema_lost()
            raise CaptureStoreUnavailable(f"capture store unreachable while recording feedback: {exc}") from exc
        return FeedbackReceipt(recorded=len(rows), received_at=received_at)

    def _flush_pending(self, request_ids: set[str], wait_seconds: float) -> None:
        for writer in list(self._writers):
            if writer.pending_among(request_ids) and not writer.flush(wait_seconds):
                still = writer.pending_among(request_ids)
                if still:
                    raise CaptureStoreUnavailable(
                        f"the captures of {len(still)} request id(s) are still queued for writing "
                        f"(store unreachable?); retry later"
                    )

    def _check_feedback(self, conn, request_ids: set[str], repeated: set[str]) -> None:
        captured = _existing_ids(conn, captures_table, request_ids)
        if unknown := request_ids - captured:
            raise UnknownRequestIds(sorted(unknown))
        if duplicates := repeated | _existing_ids(conn, feedback_table, request_ids):
            raise DuplicateFeedback(sorted(duplicates))

    # -- reads -------------------------------------------------------------------------------

    def count_captures(self, start: datetime | None = None, end: datetime | None = None) -> int:
        """Rows captured in ``[start, end)`` (either bound optional)."""
        self.ensure_schema()
        stmt = _in_window(select(func.count()).select_from(captures_table), start, end)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def count_feedback(self) -> int:
        self.ensure_schema()
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(feedback_table)).scalar_one())

    def read_captures(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        with_feedback: bool = False,
        model_version: str | None = None,
    ) -> pd.DataFrame:
        """Captured rows in ``[start, end)``, oldest first, one column per table column.

        ``captured_at`` is ``datetime64[ns, UTC]``; feature columns have the schema's names, so the
        frame feeds drift computation directly. ``with_feedback`` adds ``median_house_value`` and
        ``feedback_received_at`` (NaN / NaT where no feedback arrived) and ``feedback_token``.
        """
        self.ensure_schema()
        if with_feedback:
            stmt = select(
                captures_table,
                feedback_table.c[TARGET_COLUMN],
                feedback_table.c.received_at.label("feedback_received_at"),
                feedback_table.c.feedback_token,
            ).select_from(captures_table.outerjoin(feedback_table))
        else:
            stmt = select(captures_table)
        stmt = _in_window(stmt, start, end)
        if model_version is not None:
            stmt = stmt.where(captures_table.c.model_version == model_version)
        stmt = stmt.order_by(captures_table.c.captured_at, captures_table.c.request_id)
        with self.engine.connect() as conn:
            result = conn.execute(stmt)
            columns = list(result.keys())
            frame = pd.DataFrame.from_records(result.all(), columns=columns)
        for column in columns:
            if column in ("captured_at", "feedback_received_at"):
                frame[column] = pd.to_datetime(frame[column], utc=True)
            elif column in (*NUMERIC_FEATURE_COLUMNS, "prediction", "latency_ms", TARGET_COLUMN):
                frame[column] = frame[column].astype("float64")
            else:
                frame[column] = frame[column].astype(object)
        return frame


def _add_feedback_token_column(conn, schema: str | None) -> None:
    """A store created before feedback tokens were recorded gets the nullable column (its old rows: null)."""
    if "feedback_token" not in {column["name"] for column in inspect(conn).get_columns("feedback", schema=schema)}:
        prefix = f"{conn.dialect.identifier_preparer.quote_schema(schema)}." if schema else ""
        conn.exec_driver_sql(f"ALTER TABLE {prefix}feedback ADD COLUMN feedback_token VARCHAR")


def _created_meanwhile(error: sa_exc.DBAPIError) -> bool:
    """PostgreSQL's unique violation on its catalogue, or SQLite's "already exists" / "duplicate column"."""
    text = str(error.orig).lower()
    return isinstance(error, sa_exc.IntegrityError | sa_exc.ProgrammingError) or "already exists" in text or (
        "duplicate column" in text)


def _in_window(stmt, start: datetime | None, end: datetime | None):
    if start is not None:
        stmt = stmt.where(captures_table.c.captured_at >= start)
    if end is not None:
        stmt = stmt.where(captures_table.c.captured_at < end)
    return stmt


def _existing_ids(conn, table: Table, request_ids: set[str]) -> set[str]:
    found: set[str] = set()
    ids = sorted(request_ids)
    for i in range(0, len(ids), ID_CHUNK):
        chunk = ids[i : i + ID_CHUNK]
        found.update(conn.execute(select(table.c.request_id).where(table.c.request_id.in_(chunk))).scalars())
    return found
