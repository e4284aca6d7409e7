"""The capture store: every row the model server scores, written off the request path.

Three pieces, plain Python (no Dagster, no FastAPI):

* Tables ``captures`` (one row per scored district: features, prediction, model version, latency,
  which features were outside the training range) and ``feedback`` (the true value, once known,
  keyed by the capture's request id). SQLAlchemy Core, so the same code runs on SQLite (the default,
  in WAL mode) and PostgreSQL (``HOUSING_CAPTURE_URL``).
* :class:`CaptureWriter`: the request path calls :meth:`CaptureWriter.submit`, which only puts rows
  on a bounded in-memory queue and never blocks. A background thread writes them in batches. When
  the store is unreachable, the thread keeps rows in a bounded retry buffer and retries with
  exponential backoff; rows that fit in neither the queue nor the buffer are dropped and counted.
  :meth:`CaptureWriter.close` flushes everything on shutdown.
* :class:`CaptureStore`: the engine, feedback recording (with precise errors for unknown and
  duplicate request ids, which the API turns into 4xx), and the readers monitoring uses.

Feedback can arrive for a request whose capture is still queued in a writer (a client that posts
the true value right after its prediction). Every writer registers itself with its store and
tracks the request ids it has accepted but not yet settled; :meth:`CaptureStore.record_feedback`
asks the writers first and, if any of the ids are still pending, flushes them before checking the
table. That costs nothing in the common case and needs no cooperation from the API. It only covers
writers in the same process: with several server processes, a capture pending in another process
is reported as unknown (see :meth:`CaptureStore.record_feedback`).

Metrics: the writer exposes plain counters (:attr:`CaptureWriter.written`, ``dropped``,
``rejected``, ``sampled_out``, ``failed_attempts``, ``queue_depth``, ``buffered``) and a
:meth:`CaptureWriter.stats` snapshot; a Prometheus collector reads them at scrape time, so the hot
path carries no metrics code.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
import time
import uuid
import weakref
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path

import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.schema import CreateSchema
from sqlalchemy.types import TypeDecorator

from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NULL_ALLOWANCE,
    NUMERIC_FEATURE_COLUMNS,
    TARGET_COLUMN,
)

logger = logging.getLogger(__name__)

# How often repeated warnings (store still down, rows still being dropped) are logged at most.
WARNING_INTERVAL_SECONDS = 30.0
# Sampling resolution: a request id falls in one of 10,000 buckets, so percentages have 0.01 steps.
SAMPLING_BUCKETS = 10_000
# Request ids per IN (...) clause when looking ids up (well under SQLite's bound-parameter limit).
ID_CHUNK = 500


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (UTC).

    Naive datetimes are taken to be UTC already. SQLite has no timezone type, so the value is
    stored there as naive UTC text, which still sorts and compares correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

# A feature column is nullable exactly when the schema allows it nulls (today: total_bedrooms).
captures_table = Table(
    "captures",
    metadata,
    Column("request_id", String, primary_key=True, comment="uuid4 hex chosen by the server"),
    Column("captured_at", UTCDateTime, nullable=False, index=True),
    Column("model_version", String, nullable=False),
    *(
        Column(name, String if name == CATEGORICAL_COLUMN else Float, nullable=NULL_ALLOWANCE[name] > 0)
        for name in FEATURE_COLUMNS
    ),
    Column("prediction", Float, nullable=False, comment="USD"),
    Column("latency_ms", Float, nullable=False),
    Column(
        "out_of_range",
        String,
        nullable=False,
        default="",
        comment="comma-separated features outside the training range; empty if none",
    ),
)

feedback_table = Table(
    "feedback",
    metadata,
    Column(
        "request_id",
        String,
        ForeignKey("captures.request_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(TARGET_COLUMN, Float, nullable=False, comment="the true value, USD"),
    Column("received_at", UTCDateTime, nullable=False),
)

CAPTURE_COLUMNS = tuple(column.name for column in captures_table.columns)


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class CaptureRecord:
    """One scored row, exactly as it goes into ``captures``."""

    request_id: str
    captured_at: datetime  # timezone-aware; naive values are taken as UTC
    model_version: str
    longitude: float
    latitude: float
    housing_median_age: float
    total_rooms: float
    total_bedrooms: float | None
    population: float
    households: float
    median_income: float
    ocean_proximity: str
    prediction: float
    latency_ms: float
    out_of_range: str = ""

    @classmethod
    def from_features(
        cls,
        features: Mapping[str, object],
        *,
        prediction: float,
        model_version: str,
        latency_ms: float,
        out_of_range: Iterable[str] | str = "",
        request_id: str | None = None,
        captured_at: datetime | None = None,
    ) -> CaptureRecord:
        """Build a record from a request's feature mapping; fills a new request id and now (UTC)."""
        missing = [name for name in FEATURE_COLUMNS if name not in features]
        if missing:
            raise ValueError(f"capture record is missing feature(s) {', '.join(missing)}")
        values = {
            name: (None if features[name] is None else float(features[name]))
            for name in NUMERIC_FEATURE_COLUMNS
        }
        return cls(
            request_id=request_id or new_request_id(),
            captured_at=captured_at or datetime.now(UTC),
            model_version=model_version,
            **values,
            ocean_proximity=str(features[CATEGORICAL_COLUMN]),
            prediction=float(prediction),
            latency_ms=float(latency_ms),
            out_of_range=out_of_range if isinstance(out_of_range, str) else ",".join(out_of_range),
        )


# The record mirrors the table column for column; fail at import, not at the first insert.
if tuple(f.name for f in fields(CaptureRecord)) != CAPTURE_COLUMNS:
    raise RuntimeError(
        "CaptureRecord fields are out of step with the captures table (schema.FEATURE_COLUMNS changed?): "
        f"{tuple(f.name for f in fields(CaptureRecord))} != {CAPTURE_COLUMNS}"
    )

_record_values = attrgetter(*CAPTURE_COLUMNS)


def _record_params(record: CaptureRecord) -> dict:
    return dict(zip(CAPTURE_COLUMNS, _record_values(record)))


def is_sampled(request_id: str, sample_percent: float) -> bool:
    """Whether a request id is kept at this sampling percentage (stable across processes).

    The id's CRC-32 picks one of 10,000 buckets; buckets below ``percent * 100`` are kept.
    """
    return zlib.crc32(request_id.encode()) % SAMPLING_BUCKETS < _sampling_threshold(sample_percent)


def _sampling_threshold(sample_percent: float) -> int:
    if not 0 <= sample_percent <= 100:
        raise ValueError(f"sample_percent must be between 0 and 100, got {sample_percent!r}")
    return round(sample_percent * SAMPLING_BUCKETS / 100)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class CaptureStoreError(Exception):
    """Base class of the errors this module raises on purpose."""


class CaptureStoreUnavailable(CaptureStoreError):
    """The store cannot be reached (or captures the request depends on are still queued); retry later."""


class FeedbackRejected(CaptureStoreError):
    """Feedback refused as a whole: nothing of the call was recorded. ``request_ids`` are the culprits."""

    reason = "rejected"

    def __init__(self, request_ids: Iterable[str]):
        self.request_ids: tuple[str, ...] = tuple(request_ids)
        shown = ", ".join(repr(i) for i in self.request_ids[:10])
        more = f" and {len(self.request_ids) - 10} more" if len(self.request_ids) > 10 else ""
        super().__init__(f"{self.reason} for {len(self.request_ids)} request id(s): {shown}{more}")


class UnknownRequestIds(FeedbackRejected):
    """No capture exists for these request ids (never scored, sampled out, or dropped)."""

    reason = "no capture"


class DuplicateFeedback(FeedbackRejected):
    """Feedback for these request ids is already recorded, or repeated within the call."""

    reason = "feedback already given"


@dataclass(frozen=True, slots=True)
class FeedbackReceipt:
    recorded: int
    received_at: datetime


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


def _is_transient(exc: BaseException) -> bool:
    """Errors that mean "the store is unreachable or busy", worth retrying the same rows later."""
    if isinstance(exc, OSError | sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        # ProgrammingError covers "relation does not exist" after a table or schema was dropped:
        # the retry recreates it.
        return exc.connection_invalidated or isinstance(
            exc,
            sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.ProgrammingError | sa_exc.InternalError,
        )
    return False


class CaptureStore:
    """The capture database: schema, feedback and readers. Thread-safe; one per process is enough.

    Nothing touches the database until it is first used, so a server can start while PostgreSQL
    is still down; tables (and the PostgreSQL ``schema``, if given) are created on first use.

    ``schema`` (PostgreSQL only) puts both tables in that schema instead of the default one: tests
    use it to isolate runs.
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
            event.listen(self._base_engine, "connect", _sqlite_pragmas(busy_timeout_seconds))
        self.engine: Engine = (
            self._base_engine.execution_options(schema_translate_map={None: schema}) if schema else self._base_engine
        )
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._writers: weakref.WeakSet[CaptureWriter] = weakref.WeakSet()

    @classmethod
    def from_settings(cls, settings=None, **kwargs) -> CaptureStore:
        """The store at ``HousingSettings.capture_url`` (``HOUSING_CAPTURE_URL`` or the state folder)."""
        from housing_platform.config.settings import HousingSettings

        return cls((settings or HousingSettings.from_env()).capture_url, **kwargs)

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

    def ensure_schema(self) -> None:
        """Create the folder (SQLite), schema (PostgreSQL) and tables if absent. Cheap once done."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            if self._sqlite_file is not None:
                self._sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._create_schema()
            except (sa_exc.IntegrityError, sa_exc.ProgrammingError):
                # Another process created the same objects between our check and our CREATE.
                self._create_schema()
            self._schema_ready = True

    def _create_schema(self) -> None:
        with self.engine.begin() as conn:
            if self.schema:
                conn.execute(CreateSchema(self.schema, if_not_exists=True))
            metadata.create_all(conn)

    def _schema_lost(self) -> None:
        """After a connection error, check (and recreate) the tables before the next write."""
        self._schema_ready = False

    # -- writes ------------------------------------------------------------------------------

    def insert_captures(self, records: Sequence[CaptureRecord]) -> None:
        """Insert rows synchronously in one transaction (the writer thread's path; also batch jobs)."""
        if not records:
            return
        self.ensure_schema()
        params = [_record_params(record) for record in records]
        with self.engine.begin() as conn:
            conn.execute(captures_table.insert(), params)

    def record_feedback(
        self,
        items: Iterable[tuple[str, float]],
        *,
        received_at: datetime | None = None,
        pending_wait_seconds: float = 2.0,
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
                            {"request_id": request_id, TARGET_COLUMN: value, "received_at": received_at}
                            for request_id, value in rows
                        ],
                    )
            except sa_exc.IntegrityError:
                # A concurrent call recorded some of the same ids (or a capture vanished) between
                # our check and our insert: say which, precisely.
                with self.engine.connect() as conn:
                    self._check_feedback(conn, unique_ids, repeated)
                raise
        except sa_exc.DBAPIError as exc:
            if _is_transient(exc):
                self._schema_lost()
                raise CaptureStoreUnavailable(
                    f"capture store unreachable while recording feedback: {exc.orig}"
                ) from exc
            raise
        except OSError as exc:
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
        ``feedback_received_at`` (NaN / NaT where no feedback arrived).
        """
        self.ensure_schema()
        if with_feedback:
            stmt = select(
                captures_table,
                feedback_table.c[TARGET_COLUMN],
                feedback_table.c.received_at.label("feedback_received_at"),
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


def _sqlite_pragmas(busy_timeout_seconds: float):
    def on_connect(dbapi_connection, _connection_record) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets monitoring read while the writer writes; NORMAL sync is safe with WAL (a power
        # cut may lose the last commits, a process crash loses nothing).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


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


# ---------------------------------------------------------------------------------------------
# The writer
# ---------------------------------------------------------------------------------------------

_WAKE = object()  # put on the queue by flush()/close() so a waiting writer thread looks up at once


class _DeferredRecords:
    """The records of one request, built on first use — by the writer thread, off the request path."""

    __slots__ = ("_build", "_records", "_error")

    def __init__(self, build: Callable[[], Sequence[CaptureRecord]]):
        self._build = build
        self._records: Sequence[CaptureRecord] | None = None
        self._error: Exception | None = None

    def record(self, index: int) -> CaptureRecord:
        if self._records is None:  # only the writer thread gets here (or close(), once it has stopped)
            if self._error is not None:  # built once: a failing builder is not re-run for each of its rows
                raise self._error
            try:
                self._records = self._build()
            except Exception as error:
                self._error = error
                raise
        return self._records[index]


@dataclass(frozen=True, slots=True)
class _DeferredRow:
    """A queue item standing for row ``index`` of a request submitted with ``submit_deferred``."""

    request_id: str
    records: _DeferredRecords
    index: int


@dataclass(frozen=True, slots=True)
class CaptureWriterStats:
    """A snapshot of a writer's counters (all counts are rows, cumulative since start)."""

    queue_depth: int
    buffered: int  # held in the retry buffer because the store was unreachable
    written: int
    dropped: int  # lost: queue full, retry buffer full, submitted after close, or store down at close
    rejected: int  # refused by the database row by row (duplicate request id, invalid value)
    sampled_out: int
    failed_attempts: int  # write attempts that failed because the store was unreachable
    store_available: bool
    last_error: str | None


class CaptureWriter:
    """Writes capture records in the background; :meth:`submit` never blocks the caller.

    Rows flow: ``submit`` → bounded queue (``max_queue_rows``) → batches of up to ``batch_size``
    rows, collected for at most ``max_wait_seconds`` after the first → one multi-row INSERT each.
    If the store is unreachable, the batch moves to a retry buffer (``buffer_max_rows``) and is
    retried with exponential backoff (``retry_initial_seconds`` doubling to ``retry_max_seconds``);
    meanwhile queued rows move into the buffer while it has room. Rows that fit nowhere are dropped
    and counted. A batch the database refuses for another reason (a duplicate request id, say) is
    retried row by row so that only the bad rows are lost (counted as ``rejected``).

    ``sample_percent`` keeps that share of rows, chosen by :func:`is_sampled` on the request id;
    rows sampled out are counted in ``sampled_out``, not ``dropped``.

    Call :meth:`close` on shutdown. If the process exits without it, an ``atexit`` hook closes the
    writer with ``exit_flush_seconds`` (a SIGTERM only runs it if the process handles the signal,
    as uvicorn does).
    """

    def __init__(
        self,
        store: CaptureStore,
        *,
        max_queue_rows: int = 10_000,
        batch_size: int = 500,
        max_wait_seconds: float = 0.05,
        buffer_max_rows: int = 100_000,
        retry_initial_seconds: float = 0.1,
        retry_max_seconds: float = 5.0,
        sample_percent: float = 100.0,
        exit_flush_seconds: float = 5.0,
        name: str = "capture-writer",
    ):
        if max_queue_rows < 1 or batch_size < 1 or buffer_max_rows < 0:
            raise ValueError("max_queue_rows and batch_size must be >= 1, buffer_max_rows >= 0")
        if max_wait_seconds < 0 or retry_initial_seconds <= 0 or retry_max_seconds < retry_initial_seconds:
            raise ValueError("need max_wait_seconds >= 0 and 0 < retry_initial_seconds <= retry_max_seconds")
        self.store = store
        self.batch_size = batch_size
        self.max_wait_seconds = max_wait_seconds
        self.buffer_max_rows = buffer_max_rows
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.sample_percent = sample_percent
        self._threshold = _sampling_threshold(sample_percent)

        self._queue: queue.Queue = queue.Queue(maxsize=max_queue_rows)
        self._buffer: deque[CaptureRecord] = deque()  # touched by the writer thread only
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._pending_ids: set[str] = set()
        self._accepted = 0  # rows put on the queue
        self._settled = 0  # accepted rows written, rejected or dropped
        self._written = 0
        self._dropped = 0
        self._rejected = 0
        self._sampled_out = 0
        self._failed_attempts = 0
        self._last_error: str | None = None
        self._retry_delay = retry_initial_seconds
        self._next_retry = 0.0
        self._flush_waiters = 0
        self._closing = threading.Event()
        self._nudged = threading.Event()  # set by flush()/close(): stop collecting, write now
        self._close_deadline = math.inf
        self._close_result: bool | None = None
        self._last_drop_log = -math.inf
        self._last_failure_log = -math.inf

        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        store._writers.add(self)
        self._exit_flush_seconds = exit_flush_seconds
        if exit_flush_seconds > 0:
            atexit.register(self._close_at_exit)
        self._thread.start()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- counters ----------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def rejected(self) -> int:
        return self._rejected

    @property
    def sampled_out(self) -> int:
        return self._sampled_out

    @property
    def failed_attempts(self) -> int:
        return self._failed_attempts

    @property
    def store_available(self) -> bool:
        """False while rows wait in the retry buffer or the last write attempt failed."""
        return self._last_error is None and not self._buffer

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    def stats(self) -> CaptureWriterStats:
        return CaptureWriterStats(
            queue_depth=self.queue_depth,
            buffered=self.buffered,
            written=self._written,
            dropped=self._dropped,
            rejected=self._rejected,
            sampled_out=self._sampled_out,
            failed_attempts=self._failed_attempts,
            store_available=self.store_available,
            last_error=self._last_error,
        )

    def pending_among(self, request_ids: Iterable[str]) -> set[str]:
        """Which of these request ids are accepted but not yet written (or given up on)."""
        with self._lock:
            return self._pending_ids.intersection(request_ids)

    # -- the request path --------------------------------------------------------------------

    def submit(self, records: Iterable[CaptureRecord] | CaptureRecord) -> int:
        """Queue rows for writing without blocking; returns how many were queued.

        Rows sampled out are skipped; rows that do not fit in the queue (or arrive after
        :meth:`close`) are dropped and counted.
        """
        if isinstance(records, CaptureRecord):
            records = (records,)
        elif not isinstance(records, list | tuple):
            records = list(records)
        return self._enqueue(records)

    def submit_deferred(self, request_ids: Sequence[str], build: Callable[[], Sequence[CaptureRecord]]) -> int:
        """Like :meth:`submit`, but the records are built later, by the writer thread.

        ``build()`` must return the records of ``request_ids``, in that order. The caller pays only
        for queueing the ids; building (flags, conversions) happens while the caller serves the next
        request. A ``build`` that raises loses its rows, counted as ``rejected`` and logged.
        """
        records = _DeferredRecords(build)
        return self._enqueue([_DeferredRow(rid, records, i) for i, rid in enumerate(request_ids)])

    def _enqueue(self, records: Sequence[CaptureRecord | _DeferredRow]) -> int:
        if self._threshold < SAMPLING_BUCKETS:
            threshold = self._threshold
            kept = [r for r in records if zlib.crc32(r.request_id.encode()) % SAMPLING_BUCKETS < threshold]
        else:
            kept = records
        sampled_out = len(records) - len(kept)
        if self._closing.is_set():
            with self._lock:
                self._sampled_out += sampled_out
                self._dropped += len(kept)
            if kept:
                self._log_drop("submitted after close")
            return 0

        ids = [record.request_id for record in kept]
        with self._lock:
            # Pending before queued, so the writer can never settle an id we have not yet added.
            self._pending_ids.update(ids)
            self._sampled_out += sampled_out
        queued = 0
        put = self._queue.put_nowait
        try:
            for record in kept:
                put(record)
                queued += 1
        except queue.Full:
            pass
        overflow = len(kept) - queued
        with self._lock:
            self._accepted += queued
            if overflow:
                self._pending_ids.difference_update(ids[queued:])
                self._dropped += overflow
        if overflow:
            self._log_drop("queue full")
        return queued

    # -- flushing and shutdown ---------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row accepted before this call is settled (written, rejected or dropped).

        Returns False on timeout, e.g. while the store is unreachable.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._accepted
            self._flush_waiters += 1
        try:
            self._wake()
            with self._progress:
                while self._settled < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._progress.wait(min(remaining, 0.1))
                return True
        finally:
            with self._lock:
                self._flush_waiters -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting rows, write everything queued or buffered, and stop the thread.

        Returns True when every accepted row was settled and none had to be dropped for lack of
        time (the store being down until ``timeout``). Idempotent; later calls return the same.
        """
        if self._close_result is not None:
            return self._close_result
        deadline = time.monotonic() + timeout
        dropped_before = self._dropped
        # The thread gives up a little before we stop waiting for it, so that its last act (counting
        # what it could not write) happens while we still wait.
        self._close_deadline = deadline - min(0.25, timeout / 5)
        self._next_retry = 0.0  # one immediate attempt if the store was down
        self._closing.set()
        self._wake()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        finished = not self._thread.is_alive()
        if finished:
            # A submit that raced with close() may have queued rows after the thread's last look.
            self._drop(self._drain_queue(math.inf), "submitted during close")
        lost = self._dropped - dropped_before
        self._close_result = finished and lost == 0 and self._settled >= self._accepted
        self.store._writers.discard(self)
        atexit.unregister(self._close_at_exit)
        unsettled = self._accepted - self._settled
        log = logger.info if self._close_result else logger.warning
        log(
            "capture writer closed: %d written, %d dropped (%d during close), %d rejected, %d sampled out%s",
            self._written,
            self._dropped,
            lost,
            self._rejected,
            self._sampled_out,
            "" if finished else f"; thread still busy after {timeout:g} s, {unsettled} rows unsettled",
        )
        return self._close_result

    def _close_at_exit(self) -> None:
        self.close(self._exit_flush_seconds)

    def _wake(self) -> None:
        self._nudged.set()
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:
            pass  # a full queue means the thread is not waiting for rows anyway

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._buffer:
                    self._wait_for_retry()
                    if self._closing.is_set() and time.monotonic() >= self._close_deadline:
                        self._drop(list(self._buffer) + self._drain_queue(math.inf), "store unreachable at close")
                        self._buffer.clear()
                        return
                    self._retry_buffer()
                    continue
                batch = self._take_batch()
                if batch is None:
                    return
                if batch:
                    self._store_or_buffer(batch)
            except Exception:  # a bug here must not silently stop capturing for good
                logger.exception("capture writer: unexpected error; carrying on")
                time.sleep(0.1)

    def _take_batch(self) -> list[CaptureRecord] | None:
        """Up to batch_size rows; [] when idle; None once closing and the queue is empty."""
        closing = self._closing.is_set()
        try:
            first = self._queue.get_nowait() if closing else self._queue.get(timeout=0.5)
        except queue.Empty:
            return None if closing else []
        batch = [] if first is _WAKE else [first]
        deadline = time.monotonic() + self.max_wait_seconds
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                # Someone waits for these rows: write what we have instead of waiting for more.
                if self._closing.is_set() or self._flush_waiters or not batch:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Sleep rather than block on the queue: a blocked get() would wake this thread, and
                # take the GIL from the event loop, for every single row a request submits.
                self._nudged.wait(remaining)
                self._nudged.clear()
                continue
            if item is not _WAKE:
                batch.append(item)
        return self._materialized(batch)

    def _drain_queue(self, limit: float) -> list[CaptureRecord]:
        rows: list[CaptureRecord] = []
        while len(rows) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _WAKE:
                rows.append(item)
        return self._materialized(rows)

    def _materialized(self, items: list) -> list[CaptureRecord]:
        """Queue items as records: deferred rows are built here, in the writer thread."""
        if not any(type(item) is _DeferredRow for item in items):
            return items
        records, failed = [], []
        for item in items:
            if type(item) is not _DeferredRow:
                records.append(item)
                continue
            try:
                records.append(item.records.record(item.index))
            except Exception:  # a bug in a request's record builder must not stop capturing
                if not failed:
                    logger.exception("capture writer: building the record of request %s failed", item.request_id)
                failed.append(item)
        if failed:
            self._settle(failed, written=False, rejected=True)
        return records

    def _store_or_buffer(self, batch: list[CaptureRecord]) -> None:
        remainder = self._attempt(batch)
        if remainder:
            room = self.buffer_max_rows - len(self._buffer)
            self._buffer.extend(remainder[:room])
            self._drop(remainder[room:], "retry buffer full")

    def _wait_for_retry(self) -> None:
        """Sleep until the next retry, moving queued rows into the buffer while it has room."""
        while True:
            target = self._next_retry
            if self._closing.is_set():
                target = min(target, self._close_deadline)
            remaining = target - time.monotonic()
            self._absorb_queue()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.02))

    def _absorb_queue(self) -> None:
        room = self.buffer_max_rows - len(self._buffer)
        if room > 0:
            self._buffer.extend(self._drain_queue(room))

    def _retry_buffer(self) -> None:
        while self._buffer:
            self._absorb_queue()
            chunk = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            remainder = self._attempt(chunk)
            if remainder:
                self._buffer.extendleft(reversed(remainder))
                return

    def _attempt(self, rows: list[CaptureRecord]) -> list[CaptureRecord]:
        """Write rows; return those left unwritten because the store is unreachable."""
        try:
            self.store.insert_captures(rows)
        except Exception as exc:
            if _is_transient(exc):
                self._note_failure(exc)
                return rows
            return self._attempt_one_by_one(rows, exc)
        self._note_success()
        self._settle(rows, written=True)
        return []

    def _attempt_one_by_one(self, rows: list[CaptureRecord], batch_error: Exception) -> list[CaptureRecord]:
        logger.warning(
            "capture writer: batch of %d rows refused (%s); inserting row by row",
            len(rows),
            _short(batch_error),
        )
        for i, row in enumerate(rows):
            try:
                self.store.insert_captures([row])
            except Exception as exc:
                if _is_transient(exc):
                    self._note_failure(exc)
                    return rows[i:]
                logger.warning("capture writer: row %s rejected: %s", row.request_id, _short(exc))
                self._settle([row], written=False, rejected=True)
            else:
                self._settle([row], written=True)
        self._note_success()
        return []

    def _note_failure(self, exc: Exception) -> None:
        self.store._schema_lost()
        now = time.monotonic()
        first = self._last_error is None
        self._failed_attempts += 1
        self._last_error = _short(exc)
        self._next_retry = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.retry_max_seconds)
        if first or now - self._last_failure_log >= WARNING_INTERVAL_SECONDS:
            self._last_failure_log = now
            logger.warning(
                "capture store unreachable (%d failed attempts, %d rows buffered, next retry in %.2f s): %s",
                self._failed_attempts,
                len(self._buffer),
                self._next_retry - now,
                self._last_error,
                exc_info=exc if first else None,
            )

    def _note_success(self) -> None:
        if self._last_error is not None:
            logger.warning(
                "capture store reachable again after %d failed attempts; writing %d buffered rows",
                self._failed_attempts,
                len(self._buffer),
            )
        self._last_error = None
        self._retry_delay = self.retry_initial_seconds

    def _settle(self, rows: list[CaptureRecord], *, written: bool, rejected: bool = False) -> None:
        with self._progress:
            self._pending_ids.difference_update(row.request_id for row in rows)
            self._settled += len(rows)
            if written:
                self._written += len(rows)
            elif rejected:
                self._rejected += len(rows)
            else:
                self._dropped += len(rows)
            self._progress.notify_all()

    def _drop(self, rows: list[CaptureRecord], why: str) -> None:
        if rows:
            self._settle(rows, written=False)
            self._log_drop(why)

    def _log_drop(self, why: str) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= WARNING_INTERVAL_SECONDS:
            self._last_drop_log = now
            logger.warning("capture writer dropping rows (%s); %d dropped so far", why, self._dropped)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
