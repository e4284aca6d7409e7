"""Queue items for rows whose records are built later, by the capture writer's thread: the server's
event loop queues only request ids and a function that builds the request's records
(:meth:`~housing_platform.adapters.capture.writer.CaptureWriter.submit_deferred`), and the writer
thread calls it once per request, off the request path, when :func:`materialize` turns a batch of
queue items into records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from housing_platform.adapters.capture.records import CaptureRecord

logger = logging.getLogger(__name__)


class DeferredRecords:
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
class DeferredRow:
    """A queue item standing for row ``index`` of a request submitted with ``submit_deferred``."""

    request_id: str
    records: DeferredRecords
    index: int


def deferred_rows(request_ids: Sequence[str], build: Callable[[], Sequence[CaptureRecord]]) -> list[DeferredRow]:
    """One queue item per request id, sharing one builder that ``build()``\\ s the records in that order."""
    records = DeferredRecords(build)
    return [DeferredRow(rid, records, i) for i, rid in enumerate(request_ids)]


def materialize(items: list) -> tuple[list[CaptureRecord], list[DeferredRow]]:
    """The queue items as records, and the deferred rows whose builder failed (logged once per batch).

    Plain records pass through; a batch without deferred rows is returned as it is.
    """
    if not any(type(item) is DeferredRow for item in items):
        return items, []
    records, failed = [], []
    for item in items:
        if type(item) is not DeferredRow:
            records.append(item)
            continue
        try:
            records.append(item.records.record(item.index))
        except Exception:  # a bug in a request's record builder must not stop capturing
            if not failed:
                logger.exception("capture writer: building the record of request %s failed", item.request_id)
            failed.append(item)
    return records, failed
