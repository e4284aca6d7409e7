"""What the capture writer's queue holds: one item per request, not per row. A request's rows arrive
either built (a list of records) or deferred (:class:`DeferredChunk`): the server's event loop queues
only the request ids and a function that builds the request's records, and the writer thread calls it
once, off the request path, when :func:`materialize` turns a batch of queue items into records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from housing_platform.adapters.capture.records import CaptureRecord

logger = logging.getLogger(__name__)


class DeferredChunk:
    """The rows of one request, built later by ``build()``; only those whose id is in ``request_ids`` are kept."""

    __slots__ = ("request_ids", "build", "sampled")

    def __init__(self, request_ids: Sequence[str], build: Callable[[], Sequence[CaptureRecord]], sampled: bool):
        self.request_ids = request_ids
        self.build = build
        self.sampled = sampled  # some of the request's rows were sampled out: filter what build() returns

    def __len__(self) -> int:
        return len(self.request_ids)

    def records(self) -> Sequence[CaptureRecord]:
        built = self.build()
        if not self.sampled:
            return built
        keep = set(self.request_ids)
        return [record for record in built if record.request_id in keep]


def materialize(items: list) -> tuple[list[CaptureRecord], list[str]]:
    """The queue items' rows as one list of records, and the request ids of deferred chunks whose
    builder failed (logged once per batch)."""
    records: list[CaptureRecord] = []
    failed: list[str] = []
    for item in items:
        if type(item) is not DeferredChunk:
            records.extend(item)
            continue
        try:
            records.extend(item.records())
        except Exception:  # a bug in a request's record builder must not stop capturing
            if not failed:
                logger.exception("capture writer: building the records of request %s failed", item.request_ids[0])
            failed.extend(item.request_ids)
    return records, failed
