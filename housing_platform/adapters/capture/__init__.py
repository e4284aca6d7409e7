"""Capture of every row the model server scores, and of the true values sent back later: the
adapter's façade, re-exporting the public names of its modules (:mod:`.tables`, :mod:`.records`,
:mod:`.errors`, :mod:`.store`, :mod:`.writer`); code inside the project imports from those modules.
"""

from housing_platform.adapters.capture.errors import (
    CaptureStoreError,
    CaptureStoreUnavailable,
    DuplicateFeedback,
    FeedbackRejected,
    UnknownRequestIds,
)
from housing_platform.adapters.capture.records import CaptureRecord, FeedbackReceipt, is_sampled, new_request_id
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.tables import CAPTURE_COLUMNS
from housing_platform.adapters.capture.writer import CaptureWriter, CaptureWriterStats

__all__ = [
    "CAPTURE_COLUMNS",
    "CaptureRecord",
    "CaptureStore",
    "CaptureStoreError",
    "CaptureStoreUnavailable",
    "CaptureWriter",
    "CaptureWriterStats",
    "DuplicateFeedback",
    "FeedbackReceipt",
    "FeedbackRejected",
    "UnknownRequestIds",
    "is_sampled",
    "new_request_id",
]
