"""The durable spill against real stores: rows appended to it reach the store when a writer drains it
(as at a restart), a torn last frame or a corrupt one is skipped and counted without stopping the
drain, rows drained twice are not duplicated, and a segment is deleted only once its rows are committed.
"""

from __future__ import annotations

import os

import pytest

from housing_platform.adapters.capture.spill import SpillLog
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.writer import CaptureWriter
from housing_platform.devtools.capture_samples import make_records
from housing_platform_tests.adapters.capture_support import wait_until


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        capture = CaptureStore(f"sqlite:///{tmp_path / 'capture.db'}")
    else:
        capture = CaptureStore(request.getfixturevalue("postgres_url"),
                               schema=request.getfixturevalue("postgres_schema"))
    yield capture
    capture.dispose()


def spilled_then_process_gone(folder, *batches) -> SpillLog:
    """Rows appended by a process that then ended (its segment sealed, its lock released)."""
    spill = SpillLog(folder)
    for records in batches:
        spill.append(records)
    spill.close()
    return spill


def test_spilled_rows_reach_the_store_at_restart_and_a_torn_last_frame_is_skipped_and_counted(
        store, tmp_path, writers):
    first, second, torn = make_records(30), make_records(20), make_records(10)
    folder = tmp_path / "spill"
    spilled_then_process_gone(folder, first, second, torn)
    (segment,) = folder.glob("spill-*.log")
    size = segment.stat().st_size
    os.truncate(segment, size - 40)  # the process died in the middle of writing the last frame

    spill = SpillLog(folder)  # the restarted process
    writer = CaptureWriter(store, spill=spill)
    writers.append(writer)
    # The drain deletes the segment, then counts it (SpillLog.remove): wait for the count, not the deletion,
    # or the writer thread may not have counted yet when the assertions below read it.
    wait_until(lambda: spill.drained_rows > 0, what="the drained segment counted")
    assert not segment.exists()
    assert store.count_captures() == 50
    stored = set(store.read_captures()["request_id"])
    assert stored == {r.request_id for r in first + second}
    assert (spill.torn_frames, spill.drained_rows, spill.bytes) == (1, 50, 0)


def test_a_corrupt_frame_in_the_middle_is_skipped_and_the_frames_after_it_are_drained(tmp_path, writers):
    store = CaptureStore(f"sqlite:///{tmp_path / 'capture.db'}")
    first, corrupt, last = make_records(5), make_records(5), make_records(5)
    folder = tmp_path / "spill"
    spilled_then_process_gone(folder, first, corrupt, last)
    (segment,) = folder.glob("spill-*.log")
    data = bytearray(segment.read_bytes())
    second_frame = data.index(b"HPCS", 1)
    data[second_frame + 40] ^= 0xFF  # a flipped bit inside the second frame's payload: its checksum fails
    segment.write_bytes(bytes(data))

    spill = SpillLog(folder)
    writers.append(CaptureWriter(store, spill=spill))
    wait_until(lambda: not segment.exists(), what="the drained segment deleted")
    assert set(store.read_captures()["request_id"]) == {r.request_id for r in first + last}
    assert spill.torn_frames == 1
    store.dispose()


def test_rows_drained_twice_are_stored_once_without_error(store, tmp_path, writers):
    records = make_records(40)
    store.insert_captures(records[:25])  # a crash after committing part of the segment, before deleting it
    folder = tmp_path / "spill"
    spilled_then_process_gone(folder, records)
    spill = SpillLog(folder)
    writer = CaptureWriter(store, spill=spill)
    writers.append(writer)
    wait_until(lambda: spill.bytes == 0 and not list(folder.glob("spill-*.log")), what="the spill drained")
    assert store.count_captures() == 40
    assert (writer.rejected, spill.torn_frames) == (0, 0)

