"""Whether an answered predict request's capture fits, decided before the answer is sent
(``capture_overflow``): its rows are reserved in the writer's memory bound (*queued*); past the bound
they are written to the durable spill and fsynced first (*spilled*, spill mode, while the spill folder
is under ``capture_spill_max_bytes``); otherwise the request is *refused*, and the route answers 503
with ``Retry-After`` instead of an answer whose rows could be lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from housing_platform.adapters.capture.records import keep_sampled, sampling_threshold

if TYPE_CHECKING:
    from housing_platform.server.state import RequestCapture, ServerState

logger = logging.getLogger(__name__)

QUEUED, SPILLED, REFUSED = "queued", "spilled", "refused"


async def admit_capture(state: ServerState, capture: RequestCapture) -> str:
    """:data:`QUEUED` (schedule the capture after answering), :data:`SPILLED` (already durable) or :data:`REFUSED`."""
    writer = state.writer
    if writer is None:
        return QUEUED
    spill = writer.spill if state.config.capture_overflow == "spill" else None
    if writer.admit(capture.rows, count_refusal=spill is None):
        return QUEUED
    if spill is None:
        return REFUSED
    if spill.has_room(capture.rows):
        try:
            # The fsync is the slow part: off the event loop, but still before the answer is sent.
            await run_in_threadpool(_spill, state, capture)
            return SPILLED
        except OSError:
            logger.exception("capture spill %s refused a write; answering 503", spill.folder)
    writer.count_refused(capture.rows)
    return REFUSED


def _spill(state: ServerState, capture: RequestCapture) -> None:
    writer = state.writer
    records = keep_sampled(state.capture_records(capture), sampling_threshold(writer.sample_percent))
    writer.spill.append(records)


def capture_readiness(state: ServerState) -> dict:
    """What ``/ready`` says about capture: the overflow mode and what waits in the spill."""
    writer = state.writer
    spill = writer.spill if writer is not None else None
    info: dict = {"overflow": state.config.capture_overflow, "rows_in_memory": writer.in_memory if writer else 0}
    if spill is not None:
        stats = spill.stats()
        info.update(spill_bytes=stats.bytes, spilled_rows=stats.spilled_rows, spill_drained_rows=stats.drained_rows,
                    spill_torn_frames=stats.torn_frames)
    return {"capture": info}
