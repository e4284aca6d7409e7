"""The rows a rollout decision rests on, read from the capture store: trusted labels only.

Feedback is data anyone who reaches the server can send, so by default only labels that the label gate
(`labelled_traffic`) admitted or a person approved count (``adapters/capture/label_reviews.py``);
unjudged labels are counted and left out. Frames come out in the shapes ``core/rollout.py`` compares:
paired (shadow: both predictions on the same rows), per model (canary, rollback).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from housing_platform.adapters.capture.label_reviews import ADMITTED, APPROVED, LabelReviews
from housing_platform.core.rollout import CHALLENGER_PREDICTION, CHAMPION_PREDICTION, PREDICTION, Operations
from housing_platform.core.schema import TARGET_COLUMN


@dataclass(frozen=True)
class LabelledTraffic:
    frame: pd.DataFrame  # captured rows in the window, with the label where one is trusted
    untrusted_labels: int  # labelled rows left out: not (yet) admitted by the label gate


def read_traffic(store, start: datetime | None, end: datetime | None, trusted_only: bool) -> LabelledTraffic:
    """Captures in ``[start, end)`` with feedback; labels not admitted/approved are blanked when ``trusted_only``."""
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
    return LabelledTraffic(frame, untrusted)


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


def operations(frame: pd.DataFrame, version: str) -> Operations:
    """Rows answered and p99 latency over requests from the captures (a request's rows share one capture time
    and latency; a failed request is never captured, so errors are 0 here: the server's /metrics count them)."""
    rows = answered_by(frame, version)
    requests = rows.drop_duplicates(["captured_at", "latency_ms"]) if len(rows) else rows
    p99 = float(np.percentile(requests["latency_ms"].to_numpy(dtype=float), 99)) if len(requests) else 0.0
    return Operations(rows=len(rows), errors=0, p99_latency_ms=p99, requests=len(requests))
