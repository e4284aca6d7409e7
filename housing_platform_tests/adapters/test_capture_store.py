"""The capture store against real databases: SQLite files in tmp_path and the PostgreSQL server.

Schema creation, feedback (joined to captures, all or nothing, precise errors) and the readers;
PostgreSQL tests run in a schema of their own and are skipped only when nothing answers on 5432.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from housing_platform.adapters.capture.errors import DuplicateFeedback, UnknownRequestIds
from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.writer import CaptureWriter
from housing_platform.devtools.capture_samples import FEATURES, make_records


def test_sqlite_store_runs_in_wal_mode_with_a_busy_timeout(sqlite_store, tmp_path):
    sqlite_store.ensure_schema()
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    assert (tmp_path / "capture" / "capture.db").is_file()  # the missing folder was created


def _open_new_store_and_insert(url: str, barrier, rows: int) -> str | None:
    """In a process of its own (``serve --workers N``): open the store, start with the others, insert ``rows``."""
    try:
        with CaptureStore(url) as store:
            barrier.wait()
            store.insert_captures(make_records(rows))
    except Exception as error:  # noqa: BLE001 - reported to the test
        return repr(error)
    return None


def test_processes_starting_together_on_a_new_sqlite_file_all_create_it_and_write(tmp_path):
    """Each round: 4 processes open a new file at the same moment. Before the fix, most rounds had one fail
    with "table captures already exists" (the CREATE race) or "database is locked" (the switch to WAL)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        barrier = manager.Barrier(4)
        for round_ in range(4):
            url = f"sqlite:///{tmp_path / f'capture-{round_}.db'}"
            errors = pool.starmap(_open_new_store_and_insert, [(url, barrier, 25)] * 4)
            assert errors == [None] * 4
            with CaptureStore(url) as store:
                assert store.count_captures() == 100


def test_a_table_dropped_under_the_store_is_recreated_by_the_next_insert(sqlite_store):
    sqlite_store.insert_captures(make_records(2))
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE feedback")
        conn.exec_driver_sql("DROP TABLE captures")

    with pytest.raises(sa_exc.OperationalError):  # transient: the writer keeps the rows for a retry
        sqlite_store.insert_captures(make_records(1))
    sqlite_store.insert_captures(make_records(3))

    assert sqlite_store.count_captures() == 3


class _PendingWriter:
    """Stands in for a writer that still holds a capture, to see that the store asks registered writers."""

    def __init__(self, request_id: str):
        self.request_id, self.flushes = request_id, 0

    def pending_among(self, request_ids):
        return {self.request_id} & set(request_ids) if not self.flushes else set()

    def flush(self, timeout: float = 5.0) -> bool:
        self.flushes += 1
        return True


def test_record_feedback_flushes_registered_writers_holding_the_ids_and_only_those(sqlite_store):
    held, other = make_records(2)
    sqlite_store.insert_captures([held, other])
    writer = _PendingWriter(held.request_id)
    sqlite_store.register_writer(writer)

    sqlite_store.record_feedback([(other.request_id, 1e5)])
    assert writer.flushes == 0  # not holding that id: not flushed
    sqlite_store.record_feedback([(held.request_id, 1e5)])
    assert writer.flushes == 1

    sqlite_store.unregister_writer(writer)
    writer.flushes = 0
    with pytest.raises(DuplicateFeedback):
        sqlite_store.record_feedback([(held.request_id, 1e5)])
    assert writer.flushes == 0


# ---------------------------------------------------------------------------------------------
# Feedback and readers
# ---------------------------------------------------------------------------------------------


def test_feedback_is_joined_to_its_capture(sqlite_store):
    records = make_records(3)
    sqlite_store.insert_captures(records)
    receipt = sqlite_store.record_feedback([(records[0].request_id, 452_600.0), (records[2].request_id, 1e5)])
    assert receipt.recorded == 2 and receipt.received_at.tzinfo is not None

    frame = sqlite_store.read_captures(with_feedback=True).set_index("request_id")
    assert frame.loc[records[0].request_id, "median_house_value"] == 452_600.0
    assert frame["median_house_value"].isna().sum() == 1
    assert frame.loc[records[2].request_id, "feedback_received_at"] == receipt.received_at
    assert "median_house_value" not in sqlite_store.read_captures().columns


def test_feedback_for_unknown_ids_is_rejected_whole(sqlite_store):
    records = make_records(2)
    sqlite_store.insert_captures(records)
    with pytest.raises(UnknownRequestIds) as caught:
        sqlite_store.record_feedback([(records[0].request_id, 1e5), ("never-scored", 2e5), ("also-not", 3e5)])
    assert caught.value.request_ids == ("also-not", "never-scored")
    assert sqlite_store.count_feedback() == 0  # the known id was not recorded either


def test_duplicate_feedback_is_rejected_whether_repeated_or_already_recorded(sqlite_store):
    records = make_records(3)
    sqlite_store.insert_captures(records)
    a, b, c = (r.request_id for r in records)
    sqlite_store.record_feedback([(a, 1e5)])

    with pytest.raises(DuplicateFeedback) as already:
        sqlite_store.record_feedback([(b, 2e5), (a, 1e5)])
    assert already.value.request_ids == (a,)
    with pytest.raises(DuplicateFeedback) as repeated:
        sqlite_store.record_feedback([(c, 2e5), (c, 2e5)])
    assert repeated.value.request_ids == (c,)
    with pytest.raises(ValueError, match="finite"):
        sqlite_store.record_feedback([(b, float("nan"))])
    assert sqlite_store.count_feedback() == 1


def test_feedback_for_a_capture_still_queued_waits_for_it(sqlite_store, writers):
    # The writer would hold this row for up to 5 s hoping for a fuller batch.
    writer = CaptureWriter(sqlite_store, batch_size=1000, max_wait_seconds=5.0)
    writers.append(writer)
    (record,) = make_records(1)
    writer.submit([record])
    assert writer.pending_among([record.request_id]) == {record.request_id}

    started = time.monotonic()
    assert sqlite_store.record_feedback([(record.request_id, 3e5)]).recorded == 1
    assert time.monotonic() - started < 2.0
    assert sqlite_store.count_feedback() == 1 and writer.pending_among([record.request_id]) == set()


def test_read_captures_selects_a_half_open_utc_window(sqlite_store):
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    records = [
        CaptureRecord.from_features(
            FEATURES,
            prediction=1.0,
            model_version="1" if i < 5 else "2",
            latency_ms=1.0,
            captured_at=start + timedelta(minutes=i),
        )
        for i in range(10)
    ]
    sqlite_store.insert_captures(records)
    window_start, window_end = start + timedelta(minutes=2), start + timedelta(minutes=5)

    frame = sqlite_store.read_captures(window_start, window_end)
    assert list(frame["request_id"]) == [r.request_id for r in records[2:5]]
    assert sqlite_store.count_captures(window_start, window_end) == 3
    # A naive bound is UTC; an aware one in another zone is converted.
    assert sqlite_store.count_captures(start.replace(tzinfo=None) + timedelta(minutes=8)) == 2
    pacific_daylight = timezone(timedelta(hours=-7))
    assert sqlite_store.count_captures(end=datetime(2024, 5, 1, 5, 1, tzinfo=pacific_daylight)) == 1
    assert len(sqlite_store.read_captures(model_version="2")) == 5
    empty = sqlite_store.read_captures(end=start)
    assert empty.empty and str(empty["captured_at"].dtype) == "datetime64[ns, UTC]"


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_round_trip_of_captures_and_feedback(postgres_url, postgres_schema, writers):
    store = CaptureStore(postgres_url, schema=postgres_schema)
    writer = CaptureWriter(store, batch_size=200)
    writers.append(writer)
    records = make_records(1000)
    records[5] = records[5]._replace(total_bedrooms=None)
    records[-1] = records[-1]._replace(out_of_range="median_income,longitude", ocean_proximity="<1H OCEAN",
                                       model_version="12", prediction=123456.789012345)
    writer.submit(records)
    receipt = store.record_feedback([(records[-1].request_id, 2e5)])  # its capture may still be queued
    assert writer.close(timeout=10)

    assert (writer.written, writer.dropped, store.count_captures(), receipt.recorded) == (1000, 0, 1000, 1)
    with pytest.raises(UnknownRequestIds):
        store.record_feedback([("nope", 1.0)])
    with pytest.raises(DuplicateFeedback):
        store.record_feedback([(records[-1].request_id, 1.0)])
    frame = store.read_captures(records[0].captured_at, records[500].captured_at, with_feedback=True)
    assert len(frame) == 500 and frame["total_bedrooms"].isna().sum() == 1
    assert frame["captured_at"].iloc[0] == records[0].captured_at
    # The binary COPY writes every column exactly (float8 bit for bit, text, UTC microseconds).
    everything = store.read_captures().set_index("request_id")
    for record in (records[0], records[5], records[-1]):
        row = everything.loc[record.request_id]
        for name, value in record._asdict().items():
            if name == "request_id":
                continue
            stored = row[name]
            assert (stored != stored and value is None) or stored == value, (name, stored, value)
    with store.engine.connect() as conn:
        assert conn.execute(text("select current_schema()")).scalar() != postgres_schema  # no search_path tricks
        tables = conn.execute(
            text("select table_name from information_schema.tables where table_schema = :s order by 1"),
            {"s": postgres_schema},
        ).scalars()
        assert list(tables) == ["captures", "feedback", "scoring_failures"]
    store.dispose()
