"""The capture store's SQLite file deleted or replaced under a running writer (issue 13, item 6).

Before the fix, an open connection kept committing into the unlinked file: 2,000 rows "written" and a
feedback "recorded" that no reader would ever see. Each test reads the file at the path afterwards
with a *fresh* store, as the monitoring assets (another process) would.
"""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import event

from housing_platform.adapters.capture.errors import CaptureStoreUnavailable, UnknownRequestIds
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.writer import CaptureWriter
from housing_platform.devtools.capture_samples import make_records

FAST_RETRY = {"retry_initial_seconds": 0.01, "retry_max_seconds": 0.05}


def rows_at_path(path) -> set[str]:
    with CaptureStore(f"sqlite:///{path}") as reader:
        return set(reader.read_captures()["request_id"])


def test_rows_written_after_the_file_is_deleted_land_in_a_new_file_at_the_path(sqlite_store, writers):
    path = sqlite_store.file_watch.path
    writer = CaptureWriter(sqlite_store, max_wait_seconds=0.01, **FAST_RETRY)
    writers.append(writer)
    before, after = make_records(100), make_records(200)
    writer.submit(before)
    assert writer.flush(timeout=5)

    os.remove(path)  # the operator (or a clean-up job) deletes the database while serving
    writer.submit(after)
    assert writer.flush(timeout=5)

    assert rows_at_path(path) == {r.request_id for r in after}  # recreated with its tables, nothing silently lost
    assert writer.stats().store_reopened == 1 and writer.written == 300 and writer.dropped == 0


def test_a_file_replaced_by_another_database_is_reopened(sqlite_store, writers, tmp_path):
    path = sqlite_store.file_watch.path
    other = tmp_path / "other.db"
    with CaptureStore(f"sqlite:///{other}") as restored:  # e.g. a backup restored over the live file
        restored.insert_captures(make_records(7))
        kept = set(restored.read_captures()["request_id"])
    writer = CaptureWriter(sqlite_store, max_wait_seconds=0.01, **FAST_RETRY)
    writers.append(writer)
    writer.submit(make_records(10))
    assert writer.flush(timeout=5)

    os.replace(other, path)
    later = make_records(5)
    writer.submit(later)
    assert writer.flush(timeout=5)
    assert rows_at_path(path) == kept | {r.request_id for r in later}
    assert writer.stats().store_reopened == 1


def test_a_batch_committed_while_the_file_is_deleted_is_written_again_into_the_new_file(sqlite_store, writers):
    """The race the before-transaction check cannot see: the file goes while the INSERT runs."""
    path = sqlite_store.file_watch.path
    sqlite_store.ensure_schema()
    entered, release = threading.Event(), threading.Event()

    @event.listens_for(sqlite_store.engine, "before_cursor_execute")
    def hold(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO captures") and not release.is_set():
            entered.set()
            release.wait(10)

    writer = CaptureWriter(sqlite_store, max_wait_seconds=0, **FAST_RETRY)
    writers.append(writer)
    records = make_records(50)
    writer.submit(records)
    assert entered.wait(5)
    os.remove(path)  # while the INSERT is held: its commit goes into the unlinked file
    release.set()
    assert writer.flush(timeout=5)

    assert rows_at_path(path) == {r.request_id for r in records}
    assert writer.failed_attempts == 1 and writer.written == 50 and writer.dropped == 0


def test_feedback_is_never_recorded_into_a_deleted_file(sqlite_store):
    path = sqlite_store.file_watch.path
    old, new = make_records(3), make_records(3)
    sqlite_store.insert_captures(old)
    os.remove(path)

    with pytest.raises(UnknownRequestIds):  # its capture went with the old file: 404, not "recorded"
        sqlite_store.record_feedback([(old[0].request_id, 1.0)])
    sqlite_store.insert_captures(new)
    assert sqlite_store.record_feedback([(new[0].request_id, 2.0)]).recorded == 1
    with CaptureStore(f"sqlite:///{path}") as reader:
        assert reader.count_feedback() == 1 and reader.count_captures() == 3


def test_feedback_committed_while_the_file_is_deleted_is_reported_unavailable(sqlite_store):
    path = sqlite_store.file_watch.path
    records = make_records(2)
    sqlite_store.insert_captures(records)

    @event.listens_for(sqlite_store.engine, "before_cursor_execute")
    def delete_during_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO feedback") and path.exists():
            os.remove(path)

    with pytest.raises(CaptureStoreUnavailable):  # the API answers 503: retry, not "recorded"
        sqlite_store.record_feedback([(records[0].request_id, 1.0)])
    with CaptureStore(f"sqlite:///{path}") as reader:
        assert reader.count_feedback() == 0
