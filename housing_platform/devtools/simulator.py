"""Traffic simulator: real HTTP requests (and feedback) to a running model server.

Draws districts from the held-out test split of the dataset (never trained on), applies a scenario
from :mod:`housing_platform.devtools.scenarios` and posts them to ``/v1/predict`` in batches; with feedback,
posts each row's true value (inflated, for ``price_inflation``) to ``/v1/feedback``. Used by
``housing-platform simulate``, ``make demo`` and the end-to-end tests.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.core.splits import assign_split
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.devtools.scenarios import make_scenario


@dataclass
class SimulationResult:
    scenario: str
    rows_sent: int = 0
    rows_scored: int = 0
    feedback_sent: int = 0
    failed_requests: int = 0
    model_versions: set[str] = field(default_factory=set)
    rows_by_version: Counter = field(default_factory=Counter)  # canary: which version answered how many rows
    errors: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    def describe(self) -> str:
        versions = ", ".join(sorted(self.model_versions)) or "none"
        if len(self.rows_by_version) > 1:  # canary: say how the rows were split
            versions = ", ".join(f"{v} ({n:,} rows)" for v, n in sorted(self.rows_by_version.items()))
        return (
            f"{self.scenario}: {self.rows_scored:,}/{self.rows_sent:,} rows scored by model version(s) {versions}, "
            f"{self.feedback_sent:,} feedback values sent, {self.failed_requests} failed requests"
        )


def held_out_districts(data_path: str | Path) -> pd.DataFrame:
    """The validated rows of the test split: districts the model was evaluated on, not trained on."""
    valid = validate_housing_frame(read_housing_csv(data_path)).valid
    return valid[assign_split(valid).to_numpy() == "test"].reset_index(drop=True)


def _json_records(frame: pd.DataFrame) -> list[dict]:
    records = frame[list(FEATURE_COLUMNS)].astype(object).where(frame[list(FEATURE_COLUMNS)].notna(), None)
    return records.to_dict("records")


def simulate(
    url: str,
    scenario: str,
    rows: int,
    *,
    data_path: str | Path,
    feedback: bool = False,
    seed: int = 0,
    batch_size: int = 100,
    timeout_seconds: float = 30.0,
    client=None,
    token: str | None = None,
) -> SimulationResult:
    """Send ``rows`` districts of ``scenario`` to the server at ``url`` (and their truth, with feedback),
    with ``token`` as the bearer token when given (a server holding tokens needs one with the
    ``predict`` scope, and ``feedback`` for the truth)."""
    import httpx

    traffic = make_scenario(held_out_districts(data_path), scenario, rows, seed)
    result = SimulationResult(scenario=scenario)
    own_client = client is None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = client or httpx.Client(base_url=url.rstrip("/"), timeout=timeout_seconds, headers=headers)
    try:
        for start in range(0, len(traffic), batch_size):
            batch = traffic.iloc[start : start + batch_size]
            result.rows_sent += len(batch)
            response = client.post("/v1/predict", json={"instances": _json_records(batch)})
            if response.status_code != 200:
                result.failed_requests += 1
                result.errors.append(f"predict {response.status_code}: {response.text[:300]}")
                continue
            body = response.json()
            result.rows_scored += len(body["predictions"])
            result.model_versions.add(str(body["model_version"]))
            result.rows_by_version.update(body.get("model_versions") or [str(body["model_version"])] * len(batch))
            result.request_ids.extend(body["request_ids"])
            if feedback:
                items = [
                    {"request_id": request_id, TARGET_COLUMN: float(value)}
                    for request_id, value in zip(body["request_ids"], batch[TARGET_COLUMN])
                    if not (isinstance(value, float) and math.isnan(value))
                ]
                answer = client.post("/v1/feedback", json=items)
                if answer.status_code >= 300:
                    result.failed_requests += 1
                    result.errors.append(f"feedback {answer.status_code}: {answer.text[:300]}")
                else:
                    result.feedback_sent += len(items)
    finally:
        if own_client:
            client.close()
    return result
