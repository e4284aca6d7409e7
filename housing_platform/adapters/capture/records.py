"""What goes into and comes out of the capture store: one scored row (:class:`CaptureRecord`), the
receipt for recorded feedback, request ids, and the sampling rule that decides from a request id alone
whether its row is captured (:func:`is_sampled`), so every server process picks the same rows.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import NamedTuple, Protocol, TypeVar

import numpy as np

from housing_platform.adapters.capture.tables import CAPTURE_COLUMNS
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_FEATURE_COLUMNS

# Sampling resolution: a request id falls in one of 10,000 buckets, so percentages have 0.01 steps.
SAMPLING_BUCKETS = 10_000


class RequestScoped(Protocol):
    """Anything that stands for one request's row: a record, or a queue item for one."""

    @property
    def request_id(self) -> str: ...


_HasRequestId = TypeVar("_HasRequestId", bound=RequestScoped)


def new_request_ids(n: int) -> list[str]:
    """``n`` UUIDv7s (RFC 9562) as 32-char hex: 48 bits of Unix milliseconds, then 74 random bits.

    Time-ordered on purpose: the capture table's primary key is the request id, and a B-tree fed random
    UUID4s touches a random leaf page per row — measured with SQLite, 1,000-row transactions fell from
    27k to 11k rows/s as the table grew to 300k rows, against a steady 86–105k rows/s with these ids,
    which land at the index's right edge. 74 random bits keep an id unguessable (feedback needs one).
    All ``n`` come from one ``os.urandom`` call (``uuid.uuid4`` per row is 10× slower); Python 3.14's
    ``uuid.uuid7`` builds the same layout one id at a time.
    """
    raw = bytearray(os.urandom(16 * n))
    octets = np.frombuffer(raw, dtype=np.uint8).reshape(n, 16)
    octets[:, :6] = np.frombuffer((time.time_ns() // 1_000_000).to_bytes(6, "big"), dtype=np.uint8)
    octets[:, 6] = (octets[:, 6] & 0x0F) | 0x70  # version 7
    octets[:, 8] = (octets[:, 8] & 0x3F) | 0x80  # RFC 9562 variant
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


def new_request_id() -> str:
    return new_request_ids(1)[0]


class CaptureRecord(NamedTuple):
    """One scored row, exactly as it goes into ``captures``: a tuple in column order, so the writer's bulk
    paths bind it without copying field by field, and a request's rows are built by ``zip`` over its
    columns (:meth:`from_columns`)."""

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
    shadow_model_version: str | None = None  # the challenger that scored a shadow copy of the row, if one did
    shadow_prediction: float | None = None

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


    @classmethod
    def from_columns(cls, request_ids: Sequence[str], captured_at: datetime, model_version: str,
                     columns: Sequence[Sequence], predictions: Sequence[float], latency_ms: float,
                     out_of_range: Sequence[str], model_versions: Sequence[str] | None = None,
                     shadow_version: str | None = None,
                     shadow_predictions: Sequence[float] | None = None) -> list[CaptureRecord]:
        """One request's rows: ``columns`` are the numeric features (schema order, None for a null) then
        the category, each a sequence of plain Python values. ``model_versions``: per row, when a canary
        split the request between two versions (else every row has ``model_version``);
        ``shadow_version`` / ``shadow_predictions``: the challenger's shadow scores of the rows."""
        n = len(request_ids)
        make = tuple.__new__
        versions = model_versions if model_versions is not None else repeat(model_version, n)
        shadows = shadow_predictions if shadow_predictions is not None else repeat(None, n)
        return [
            make(cls, row)
            for row in zip(request_ids, repeat(captured_at, n), versions, *columns, predictions,
                           repeat(latency_ms, n), out_of_range, repeat(shadow_version, n), shadows)
        ]


# The record mirrors the table column for column; fail at import, not at the first insert.
if CaptureRecord._fields != CAPTURE_COLUMNS:
    raise RuntimeError(
        "CaptureRecord fields are out of step with the captures table (schema.FEATURE_COLUMNS changed?): "
        f"{CaptureRecord._fields} != {CAPTURE_COLUMNS}"
    )


def record_params(record: CaptureRecord) -> dict:
    """The record as INSERT parameters for ``captures`` (column name → value)."""
    return dict(zip(CAPTURE_COLUMNS, record))


@dataclass(frozen=True, slots=True)
class FeedbackReceipt:
    """What :meth:`~housing_platform.adapters.capture.store.CaptureStore.record_feedback` recorded."""

    recorded: int
    received_at: datetime


def is_sampled(request_id: str, sample_percent: float) -> bool:
    """Whether a request id is kept at this sampling percentage (stable across processes).

    The id's CRC-32 picks one of 10,000 buckets; buckets below ``percent * 100`` are kept.
    """
    return zlib.crc32(request_id.encode()) % SAMPLING_BUCKETS < sampling_threshold(sample_percent)


def sampling_threshold(sample_percent: float) -> int:
    """The first bucket *not* kept at this percentage (``SAMPLING_BUCKETS`` keeps every id)."""
    if not 0 <= sample_percent <= 100:
        raise ValueError(f"sample_percent must be between 0 and 100, got {sample_percent!r}")
    return round(sample_percent * SAMPLING_BUCKETS / 100)


def keep_sampled(items: Sequence[_HasRequestId], threshold: int) -> Sequence[_HasRequestId]:
    """The items whose request id is kept at ``threshold`` (from :func:`sampling_threshold`).

    The same rule as :func:`is_sampled`, with the threshold computed once per call instead of per row.
    """
    if threshold >= SAMPLING_BUCKETS:
        return items
    crc32 = zlib.crc32
    return [item for item in items if crc32(item.request_id.encode()) % SAMPLING_BUCKETS < threshold]


def sampled_ids(request_ids: Sequence[str], threshold: int) -> Sequence[str]:
    """:func:`keep_sampled` for bare request ids."""
    if threshold >= SAMPLING_BUCKETS:
        return request_ids
    crc32 = zlib.crc32
    return [rid for rid in request_ids if crc32(rid.encode()) % SAMPLING_BUCKETS < threshold]
