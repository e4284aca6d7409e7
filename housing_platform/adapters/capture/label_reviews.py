"""Label reviews: which labelled captures the label gate admitted, held, and what a person decided.

Two tables of their own in the capture database (created idempotently on first use, beside
``captures`` and ``feedback``, in the same PostgreSQL schema if the store has one):

* ``label_batches`` — one row per batch: the rule that made it (``schema``, ``volume``,
  ``consistency``; ``admitted`` for rows the gate let through), the source (feedback token or the key
  that stood in for it), the number of rows, the reason and its figures (JSON), the Dagster run, its
  status (``held`` → ``approved`` | ``rejected``; ``admitted``) and, once decided, who decided, when and why.
* ``label_batch_rows`` — which request ids belong to which batch; a request id is in at most one batch,
  so a label is judged once: held rows stay out of training until approved, rejected rows never
  return, admitted and approved rows are not judged again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy import exc as sa_exc

from housing_platform.adapters.capture.store import ID_CHUNK, CaptureStore
from housing_platform.adapters.capture.tables import UTCDateTime

HELD, APPROVED, REJECTED, ADMITTED = "held", "approved", "rejected", "admitted"
STATUSES = (HELD, APPROVED, REJECTED, ADMITTED)
# Rows of batches with these statuses go to training; held and rejected rows do not.
TRAINABLE = (ADMITTED, APPROVED)

review_metadata = MetaData()

label_batches_table = Table(
    "label_batches",
    review_metadata,
    Column("batch_id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String, nullable=False, index=True),
    Column("rule", String, nullable=False, comment="schema, volume, consistency; admitted"),
    Column("source", String, nullable=False, comment="feedback token, or the key that stood in for it"),
    Column("row_count", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("details", Text, nullable=False, default="{}", comment="JSON: the figures behind the reason"),
    Column("run_id", String, nullable=False, default=""),
    Column("decided_by", String),
    Column("decided_at", UTCDateTime),
    Column("decision_reason", Text),
)

label_batch_rows_table = Table(
    "label_batch_rows",
    review_metadata,
    Column("request_id", String, primary_key=True),
    Column("batch_id", Integer, ForeignKey("label_batches.batch_id"), nullable=False, index=True),
)

BATCH_COLUMNS = tuple(column.name for column in label_batches_table.columns)


class BatchNotFound(LookupError):
    pass


class BatchAlreadyDecided(ValueError):
    pass


@dataclass(frozen=True)
class NewBatch:
    """A batch to record: its rule, source, reason, figures and request ids."""

    rule: str
    source: str
    reason: str
    request_ids: list[str]
    details: dict | None = None


class LabelReviews:
    """Reads and writes the two review tables through a :class:`CaptureStore`'s engine."""

    def __init__(self, store: CaptureStore):
        self.store = store
        self._ready = False

    def ensure_tables(self) -> None:
        if self._ready:
            return
        self.store.ensure_schema()
        try:
            with self.store.engine.begin() as conn:
                review_metadata.create_all(conn)
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError):
            # Another process created them between our check and our CREATE.
            with self.store.engine.begin() as conn:
                review_metadata.create_all(conn)
        self._ready = True

    def record(self, batches: list[NewBatch], *, status: str, run_id: str = "",
               decided_by: str | None = None, now: datetime | None = None) -> list[int]:
        """Insert ``batches`` (empty ones skipped) with ``status`` in one transaction; their ids."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        self.ensure_tables()
        now = now or datetime.now(UTC)
        ids = []
        with self.store.engine.begin() as conn:
            for batch in batches:
                if not batch.request_ids:
                    continue
                batch_id = conn.execute(
                    label_batches_table.insert().values(
                        created_at=now, status=status, rule=batch.rule, source=str(batch.source),
                        row_count=len(batch.request_ids), reason=batch.reason,
                        details=json.dumps(batch.details or {}, default=str), run_id=run_id,
                        decided_by=decided_by, decided_at=now if decided_by else None,
                    )
                ).inserted_primary_key[0]
                rows = [{"request_id": str(request_id), "batch_id": batch_id} for request_id in batch.request_ids]
                for start in range(0, len(rows), ID_CHUNK):
                    conn.execute(label_batch_rows_table.insert(), rows[start : start + ID_CHUNK])
                ids.append(int(batch_id))
        return ids

    def row_statuses(self) -> pd.Series:
        """Status of the batch each reviewed request id belongs to (index: request id)."""
        self.ensure_tables()
        stmt = select(label_batch_rows_table.c.request_id, label_batches_table.c.status).select_from(
            label_batch_rows_table.join(label_batches_table)
        )
        with self.store.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return pd.Series({request_id: status for request_id, status in rows}, dtype=object)

    def batches(self, status: str | None = None) -> pd.DataFrame:
        """Batches, newest first (all, or those with ``status``), one column per table column."""
        self.ensure_tables()
        stmt = select(label_batches_table).order_by(label_batches_table.c.batch_id.desc())
        if status is not None:
            stmt = stmt.where(label_batches_table.c.status == status)
        with self.store.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return pd.DataFrame.from_records(rows, columns=list(BATCH_COLUMNS))

    def batch(self, batch_id: int) -> dict:
        self.ensure_tables()
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(label_batches_table).where(label_batches_table.c.batch_id == int(batch_id))
            ).mappings().first()
        if row is None:
            raise BatchNotFound(f"no label batch {batch_id}")
        return dict(row)

    def decide(self, batch_id: int, *, approve: bool, by: str, why: str, now: datetime | None = None) -> dict:
        """Approve (release into the next `labelled_traffic`) or reject (never train on) a held batch.

        Only a held batch can be decided, once: :class:`BatchAlreadyDecided` otherwise, naming the
        earlier decision. Returns the batch as recorded.
        """
        if not by.strip() or not why.strip():
            raise ValueError("a decision records who made it and why: both must be non-empty")
        self.ensure_tables()
        now = now or datetime.now(UTC)
        status = APPROVED if approve else REJECTED
        with self.store.engine.begin() as conn:
            changed = conn.execute(
                update(label_batches_table)
                .where(label_batches_table.c.batch_id == int(batch_id), label_batches_table.c.status == HELD)
                .values(status=status, decided_by=by, decided_at=now, decision_reason=why)
            ).rowcount
        if not changed:
            current = self.batch(batch_id)  # raises BatchNotFound
            raise BatchAlreadyDecided(
                f"label batch {batch_id} is {current['status']}"
                + (f" (by {current['decided_by']} at {current['decided_at']:%Y-%m-%d %H:%M} UTC: "
                   f"{current['decision_reason']})" if current["decided_by"] else "")
                + "; only held batches can be approved or rejected"
            )
        return self.batch(batch_id)
