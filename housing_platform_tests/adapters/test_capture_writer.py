"""The capture writer against real databases: batching, deferred records, sampling, back-pressure,
outages and shutdown.

Outages are real: a SQLite folder that cannot be created, a closed port, and a TCP proxy in front of
PostgreSQL that is stopped and restarted.
"""

from __future__ import annotations

import socket
import threading
import time
import zlib

import pytest
from sqlalchemy import event

from housing_platform.adapters.capture.errors import CaptureStoreUnavailable
from housing_platform.adapters.capture.records import is_sampled
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.writer import CaptureWriter
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.devtools.capture_samples import make_records
from housing_platform.devtools.processes import free_port
from housing_platform_tests.adapters.capture_support import wait_until

# Retry fast so outages resolve within the test's time budget.
FAST_RETRY = {"retry_initial_seconds": 0.01, "retry_max_seconds": 0.05}


def fill_retry_buffer(writer: CaptureWriter, rows: int) -> None:
    """Submit rows and let the writer move them into its retry buffer (the store being down)."""
    assert writer.submit(make_records(rows)) == rows
    wait_until(lambda: writer.buffered == rows, what=f"{rows} rows buffered")


class InsertGate:
    """Holds the writer thread inside its INSERT until released, to fill the queue on purpose."""

    def __init__(self, engine):
        self.entered = threading.Event()
        self.released = threading.Event()
        self.engine = engine
        event.listen(engine, "before_cursor_execute", self._hold)

    def _hold(self, conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO captures") and not self.released.is_set():
            self.entered.set()
            self.released.wait(10)

    def release(self):
        self.released.set()
        event.remove(self.engine, "before_cursor_execute", self._hold)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def test_batched_writes_land_with_exact_counts_and_values(sqlite_store, writers):
    batch_sizes: list[int] = []

    @event.listens_for(sqlite_store.engine, "before_cursor_execute")
    def count_rows(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO captures"):
            batch_sizes.append(len(parameters) if executemany else 1)

    writer = CaptureWriter(sqlite_store, batch_size=100, max_wait_seconds=0.05)
    writers.append(writer)
    records = make_records(1234)
    records[0] = records[0]._replace(total_bedrooms=None)
    records[1] = records[1]._replace(out_of_range="median_income,longitude")
    for i in range(0, len(records), 17):  # requests of a few rows each, as a server would submit
        assert writer.submit(records[i : i + 17]) == len(records[i : i + 17])

    assert writer.flush(timeout=10)
    assert (writer.written, writer.dropped, writer.rejected, writer.queue_depth) == (1234, 0, 0, 0)
    assert sqlite_store.count_captures() == 1234
    assert sum(batch_sizes) == 1234 and max(batch_sizes) <= 100
    assert len(batch_sizes) < 1234 / 10, f"rows were not batched: {len(batch_sizes)} INSERTs"

    frame = sqlite_store.read_captures().set_index("request_id")
    first, second = frame.loc[records[0].request_id], frame.loc[records[1].request_id]
    assert first.isna()["total_bedrooms"] and first["median_income"] == pytest.approx(8.3252)
    assert first["ocean_proximity"] == "NEAR BAY" and first["model_version"] == "3"
    assert first["captured_at"] == records[0].captured_at and str(frame["captured_at"].dtype) == "datetime64[ns, UTC]"
    assert second["out_of_range"] == "median_income,longitude" and first["out_of_range"] == ""
    assert list(frame.columns[2:11]) == list(FEATURE_COLUMNS)


def test_deferred_records_are_built_by_the_writer_thread_and_written_exactly(sqlite_store, writers):
    writer = CaptureWriter(sqlite_store, batch_size=50, max_wait_seconds=0.02)
    writers.append(writer)
    records = make_records(120)
    built_in: list[str] = []

    def builder(rows):
        def build():
            built_in.append(threading.current_thread().name)
            return rows
        return build

    for i in range(0, 120, 3):  # single- and few-row requests, as the server's event loop submits them
        rows = records[i : i + 3]
        assert writer.submit_deferred([r.request_id for r in rows], builder(rows)) == 3

    assert writer.flush(timeout=10)
    assert (writer.written, writer.dropped, writer.rejected) == (120, 0, 0)
    assert len(built_in) == 40 and set(built_in) == {"capture-writer"}  # once per request, off the caller
    stored = sqlite_store.read_captures().set_index("request_id")
    assert set(stored.index) == {r.request_id for r in records}
    assert stored.loc[records[7].request_id, "prediction"] == pytest.approx(records[7].prediction)


def test_a_deferred_builder_that_fails_loses_only_its_rows_counted_as_rejected(sqlite_store, writers):
    writer = CaptureWriter(sqlite_store, max_wait_seconds=0.02)
    writers.append(writer)
    good, bad = make_records(4), make_records(2)

    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("bug in a record builder")

    writer.submit_deferred([r.request_id for r in good[:2]], lambda: good[:2])
    writer.submit_deferred([r.request_id for r in bad], broken)
    writer.submit(good[2:])

    assert writer.flush(timeout=5)
    assert (writer.written, writer.rejected, writer.dropped) == (4, 2, 0)
    assert writer.pending_among(r.request_id for r in good + bad) == set()
    assert len(calls) == 1  # tried once for the request, not once per row
    assert sqlite_store.count_captures() == 4


def test_submit_without_admission_never_blocks_and_counts_drops_past_the_bound(sqlite_store, writers):
    gate = InsertGate(sqlite_store.engine)
    writer = CaptureWriter(sqlite_store, max_queue_rows=10, batch_size=5, max_wait_seconds=0)
    writers.append(writer)
    writer.submit(make_records(1))
    assert gate.entered.wait(5), "writer never started its INSERT"  # the thread is stuck in it

    started = time.perf_counter()
    queued = writer.submit(make_records(25))
    elapsed = time.perf_counter() - started

    assert elapsed < 0.05, f"submit blocked for {elapsed:.3f} s"
    # The bound counts every row in memory, the one being inserted too: 9 of 25 fit.
    assert (queued, writer.queue_depth, writer.in_memory, writer.dropped) == (9, 9, 10, 16)
    gate.release()
    assert writer.close(timeout=5)
    assert (writer.written, writer.dropped) == (10, 16)
    assert sqlite_store.count_captures() == 10


def test_admission_refuses_past_the_bound_and_admitted_rows_are_never_dropped(sqlite_store, writers):
    gate = InsertGate(sqlite_store.engine)
    writer = CaptureWriter(sqlite_store, max_queue_rows=10, batch_size=5, max_wait_seconds=0)
    writers.append(writer)
    assert writer.admit(4)
    writer.submit(make_records(4), admitted=4)
    assert gate.entered.wait(5), "writer never started its INSERT"  # 4 rows held in the INSERT

    assert writer.admit(6)  # 4 + 6 = 10: exactly the bound
    assert not writer.admit(1)  # refused before the request is answered: counted, not dropped
    records = make_records(6)
    assert writer.submit(records, admitted=6) == 6
    assert not writer.admit(3)
    stats = writer.stats()
    assert (stats.refused, stats.refused_requests, stats.dropped, stats.reserved, writer.in_memory) == (4, 2, 0, 0, 10)

    gate.release()
    assert writer.flush(timeout=5)
    assert writer.admit(10) and writer.stats().reserved == 10  # room again once written
    writer.release(10)
    assert writer.in_memory == 0
    assert writer.admit(25)  # nothing in memory: a request larger than the bound still passes alone
    writer.release(25)
    assert writer.close(timeout=5)
    assert (writer.written, writer.dropped, writer.stats().refused) == (10, 0, 4)
    assert sqlite_store.count_captures() == 10


def test_store_down_buffers_rows_refuses_admission_and_writes_them_when_back(tmp_path, writers):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("the capture folder cannot be created while this file is here")
    store = CaptureStore(f"sqlite:///{blocker / 'capture.db'}")
    writer = CaptureWriter(store, max_queue_rows=100, buffer_max_rows=100, batch_size=40, **FAST_RETRY)
    writers.append(writer)

    fill_retry_buffer(writer, rows=70)
    assert writer.failed_attempts >= 1 and not writer.store_available and writer.written == 0
    assert writer.admit(30) and writer.submit(make_records(30), admitted=30) == 30
    assert not writer.admit(1)  # bound reached: the server answers 503 instead of losing the row
    assert writer.submit(make_records(5)) == 0 and writer.dropped == 5  # without admission: dropped, counted
    with pytest.raises(CaptureStoreUnavailable):  # the API answers 503, not "unknown id"
        store.record_feedback([("anything", 1.0)])

    blocker.unlink()  # the store comes back
    assert writer.flush(timeout=5)
    assert (writer.written, writer.dropped, writer.buffered, writer.queue_depth) == (100, 5, 0, 0)
    assert writer.store_available
    assert store.count_captures() == 100
    store.dispose()


def test_writer_keeps_writing_after_an_idle_spell(sqlite_store, writers):
    writer = CaptureWriter(sqlite_store)
    writers.append(writer)
    writer.submit(make_records(5))
    assert writer.flush(timeout=5)
    time.sleep(0.7)  # longer than the thread's idle poll
    writer.submit(make_records(5))
    assert writer.flush(timeout=5) and writer.written == 10


def test_rows_the_database_refuses_are_rejected_one_by_one_not_the_batch(sqlite_store, writers):
    existing = make_records(1)
    sqlite_store.insert_captures(existing)
    writer = CaptureWriter(sqlite_store, max_wait_seconds=0.2)
    writers.append(writer)
    batch = make_records(9) + existing  # the same request id again
    writer.submit(batch)
    assert writer.close(timeout=5)
    assert (writer.written, writer.rejected, writer.dropped) == (9, 1, 0)
    assert sqlite_store.count_captures() == 10


def test_close_flushes_everything_still_queued(sqlite_store, writers):
    # A long max_wait proves close() does not wait for batches to fill up.
    writer = CaptureWriter(sqlite_store, batch_size=300, max_wait_seconds=2.0, max_queue_rows=5000)
    writers.append(writer)
    threads = [threading.Thread(target=writer.submit, args=(make_records(1000),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    started = time.monotonic()
    assert writer.close(timeout=10)
    assert time.monotonic() - started < 1.5
    assert (writer.written, writer.dropped, writer.queue_depth) == (4000, 0, 0)
    assert sqlite_store.count_captures() == 4000
    assert writer.submit(make_records(3)) == 0 and writer.dropped == 3  # closed: counted, not queued


@pytest.mark.parametrize("percent", [0, 30, 100])
def test_sampling_keeps_the_predicted_request_ids(sqlite_store, writers, percent):
    writer = CaptureWriter(sqlite_store, sample_percent=percent)
    writers.append(writer)
    records = make_records(1000)
    # The documented rule, spelled out independently of the module: CRC-32 bucket out of 10,000.
    expected = {r.request_id for r in records if zlib.crc32(r.request_id.encode()) % 10_000 < percent * 100}
    assert expected == {r.request_id for r in records if is_sampled(r.request_id, percent)}

    if 0 < percent < 100:  # ids on either side of the threshold bucket pin the comparison (< not <=)
        below, on = (id_in_bucket(bucket) for bucket in (percent * 100 - 1, percent * 100))
        records += make_records(1, request_id=below) + make_records(1, request_id=on)
        expected.add(below)

    writer.submit(records)
    assert writer.close(timeout=5)

    assert set(sqlite_store.read_captures()["request_id"]) == expected
    assert (writer.written, writer.sampled_out, writer.dropped) == (len(expected), len(records) - len(expected), 0)
    if percent == 30:
        assert 240 <= len(expected) <= 360
    assert is_sampled("any-id", 100) and not is_sampled("any-id", 0)


def id_in_bucket(bucket: int) -> str:
    return next(f"id-{n}" for n in range(10**6) if zlib.crc32(f"id-{n}".encode()) % 10_000 == bucket)


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


class TcpProxy:
    """A byte pump on a fixed local port that can be stopped (connections cut) and restarted."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for sock in self._sockets:
            for action in (lambda s: s.shutdown(socket.SHUT_RDWR), socket.socket.close):
                try:
                    action(sock)
                except OSError:
                    pass
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.mark.postgres
def test_postgres_outage_is_buffered_and_written_when_the_server_is_back(postgres_url, postgres_schema, writers):
    proxy = TcpProxy(5432)
    proxy.start()
    try:
        store = CaptureStore(f"postgresql+psycopg2://postgres@127.0.0.1:{proxy.port}/test", schema=postgres_schema)
        writer = CaptureWriter(store, batch_size=100, **FAST_RETRY)
        writers.append(writer)
        writer.submit(make_records(200))
        assert writer.flush(timeout=5) and writer.written == 200  # pooled connections now exist

        proxy.stop()  # server gone, pooled connections cut
        writer.submit(make_records(300))
        wait_until(lambda: writer.buffered == 300 and writer.failed_attempts >= 2, what="300 rows buffered")
        assert writer.written == 200 and not writer.store_available

        proxy.start()
        assert writer.flush(timeout=5)
        assert writer.close(timeout=5)
        assert (writer.written, writer.dropped) == (500, 0)
        assert store.count_captures() == 500
        store.dispose()
    finally:
        proxy.stop()


def test_close_gives_up_on_an_unreachable_postgres_and_counts_every_row_dropped(writers):
    store = CaptureStore(f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test")  # nothing listens
    writer = CaptureWriter(store, max_queue_rows=150, buffer_max_rows=150, **FAST_RETRY)
    writers.append(writer)
    fill_retry_buffer(writer, rows=100)
    assert writer.submit(make_records(80)) == 50

    started = time.monotonic()
    assert writer.close(timeout=0.5) is False
    assert time.monotonic() - started < 2.0
    assert (writer.written, writer.dropped, writer.buffered, writer.queue_depth) == (0, 180, 0, 0)
