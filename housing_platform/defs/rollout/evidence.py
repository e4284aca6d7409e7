"""The rows a rollout decision rests on, read from the capture store: trusted labels only.

Feedback is data anyone who reaches the server can send, so by default only labels that the label gate
(`labelled_traffic`) admitted or a person approved count (``adapters/capture/label_reviews.py``);
unjudged labels are counted and left out. Frames come out in the shapes ``core/rollout.py`` compares:
paired (shadow: both predictions on the same rows), per model (canary, rollback). The rows each version
failed to answer (``scoring_failures``, written by the servers: ``adapters/capture/failures.py``) come with
the traffic, for the error rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from housing_platform.adapters.capture.failures import FAILURE_COLUMNS, failed_rows_by_version, read_failures
from housing_platform.adapters.capture.label_reviews import ADMITTED, APPROVED, LabelReviews
from housing_platform.core.rollout import CHALLENGER_PREDICTION, CHAMPION_PREDICTION, PREDICTION, Operations
from housing_platform.core.schema import TARGET_COLUMN


@dataclass(frozen=True)
class LabelledTraffic:
    frame: pd.DataFrame  # captured rows in the window, with the label where one is trusted
    untrusted_labels: int  # labelled rows left out: not (yet) admitted by the label gate
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(FAILURE_COLUMNS)))


def read_traffic(store, start: datetime | None, end: datetime | None, trusted_only: bool) -> LabelledTraffic:
    """Captures in ``[start, end)`` with feedback (labels not admitted/approved are blanked when ``trusted_only``),
    and the scoring failures recorded in the window."""
    frame = store.read_captures(start, end, with_feedback=True)
    if TARGET_COLUMN not in frame.columns:
        frame[TARGET_COLUMN] = np.nan
    untrusted = 0
    if trusted_only and len(frame):
        statuses = LabelReviews(store).row_statuses()
        trusted = frame["request_id"].map(statuses).isin([ADMITTED, APPROVED]).to_numpy()
        labelled = frame[TARGET_COLUMN].notna().to_numpy()
        untrusted = int((labelled & ~trusted).sum())
        frame.loc[~trusted, TARGET_COLUMN] = np.nan
    return LabelledTraffic(frame, untrusted, read_failures(store, start, end))


def answered_by(frame: pd.DataFrame, version: str) -> pd.DataFrame:
    return frame[frame["model_version"].astype(str) == str(version)]


def labelled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame[TARGET_COLUMN].notna()]


def paired_rows(frame: pd.DataFrame, champion: str, challenger: str) -> pd.DataFrame:
    """Shadow: rows the champion answered and the challenger scored in shadow, with a trusted label."""
    if "shadow_model_version" not in frame.columns:
        return pd.DataFrame(columns=[TARGET_COLUMN, CHAMPION_PREDICTION, CHALLENGER_PREDICTION])
    rows = labelled_rows(answered_by(frame, champion))
    rows = rows[(rows["shadow_model_version"].astype(str) == str(challenger)) & rows["shadow_prediction"].notna()]
    return rows.rename(columns={"prediction": CHAMPION_PREDICTION, "shadow_prediction": CHALLENGER_PREDICTION})


def model_rows(frame: pd.DataFrame, version: str) -> pd.DataFrame:
    """Canary / rollback: the labelled rows ``version`` answered itself."""
    return labelled_rows(answered_by(frame, version)).rename(columns={"prediction": PREDICTION})


def operations(frame: pd.DataFrame, version: str, failures: pd.DataFrame | None = None) -> Operations:
    """``version``'s operational figures in the window: ``errors`` = the rows it failed to answer (``failures``,
    a :func:`~housing_platform.adapters.capture.failures.read_failures` frame of the same window: a NaN or
    infinite prediction for a schema-valid row, or an exception while scoring; in canary the rows it would have
    answered, in shadow the rows it failed to score beside the champion), ``rows`` = the rows it answered or
    scored in shadow (from the captures) + those failed ones; so ``core/rollout.py``'s error rate is failed /
    asked. A failed request is never captured: its rows are only in ``failures``. p99 latency over the requests
    it answered (a request's rows share one capture time and latency; a shadow score has no latency of its own).
    Both are sampled alike: the servers store each answered row and each failed row with probability
    ``capture_sample_percent`` (``server/failures.py``), so the rate is unbiased at any sampling rate."""
    rows = answered_by(frame, version)
    requests = rows.drop_duplicates(["captured_at", "latency_ms"]) if len(rows) else rows
    p99 = float(np.percentile(requests["latency_ms"].to_numpy(dtype=float), 99)) if len(requests) else 0.0
    shadowed = 0
    if "shadow_model_version" in frame.columns and len(frame):
        shadowed = int(((frame["shadow_model_version"].astype(str) == str(version))
                        & frame["shadow_prediction"].notna()).sum())
    failed = failed_rows_by_version(failures).get(str(version), 0) if failures is not None else 0
    return Operations(rows=len(rows) + shadowed + failed, errors=failed, p99_latency_ms=p99, requests=len(requests))
