"""`labelled_traffic`, the label gate, on real districts scored by a real (tiny) champion.

The validated base data is stood in by the real test split (every row of it is in the test split, so it
is the trusted yardstick), the champion is `devtools.tiny_models`' v1, the capture store is SQLite in a
temp folder: a poisoning burst is held and never reaches `training_data`, honest traffic (stable and
`income_shift`) is admitted, a person's approval releases a held batch and a rejection discards it.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from housing_platform.adapters.capture.label_reviews import APPROVED, HELD, REJECTED, LabelReviews
from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.core.schema import FEATURE_COLUMNS, MAX_HOUSE_VALUE, TARGET_COLUMN
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.labels.assets import labelled_traffic
from housing_platform.defs.labels.checks import CONSISTENCY_CHECK, SCHEMA_CHECK, VOLUME_CHECK
from housing_platform.defs.resources import CaptureStoreResource, MLflowResource
from housing_platform.defs.training.assets import training_data
from housing_platform.devtools.scenarios import make_scenario
from housing_platform.devtools.tiny_models import RegisteredModels
from housing_platform_tests.support import bare_numbers

pytestmark = pytest.mark.slow


class LabelledWorld:
    """A capture store with labelled traffic, and the graph labelled_traffic → training_data over it."""

    def __init__(self, root: Path, models: RegisteredModels):
        self.root = root
        self.url = f"sqlite:///{root / 'capture.db'}"
        self.trusted = models.test.reset_index(drop=True)
        self.resources = {
            "capture_store": CaptureStoreResource(url=self.url),
            "mlflow_tracking": MLflowResource(tracking_uri=models.tracking_uri, artifact_root=models.artifact_root),
            "io_manager": ParquetJsonIOManager(base_dir=str(root / "storage")),
        }

    def label(self, frame: pd.DataFrame, token_id: str | None = None) -> list[str]:
        """Capture ``frame``'s districts and feed back its ``median_house_value`` (sent with ``token_id``)."""
        store = CaptureStore(self.url)
        try:
            records = [
                CaptureRecord.from_features(row, prediction=200_000.0, model_version="1", latency_ms=1.0)
                for row in frame[list(FEATURE_COLUMNS)].astype(object).where(frame[list(FEATURE_COLUMNS)].notna(), None)
                .to_dict("records")
            ]
            store.insert_captures(records)
            store.record_feedback([(r.request_id, float(v)) for r, v in zip(records, frame[TARGET_COLUMN])],
                                  token_id=token_id)
        finally:
            store.dispose()
        return [r.request_id for r in records]

    def run(self, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        trusted = self.trusted

        @dg.asset(name="validated_housing_data")
        def validated_stand_in() -> pd.DataFrame:
            return trusted

        return dg.materialize(
            [validated_stand_in, labelled_traffic, training_data],
            resources=self.resources,
            run_config=run_config or {},
            raise_on_error=False,
        )

    def value(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.root / "storage" / f"{name}.parquet")

    def reviews(self) -> tuple[LabelReviews, CaptureStore]:
        store = CaptureStore(self.url)
        return LabelReviews(store), store


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def poisoned_inland(trusted: pd.DataFrame, rows: int, factor: float, seed: int) -> pd.DataFrame:
    """``rows`` INLAND districts labelled at ``factor`` × their true value (kept inside the schema's range)."""
    inland = trusted[trusted["ocean_proximity"] == "INLAND"]
    burst = inland.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    burst[TARGET_COLUMN] = np.minimum(burst[TARGET_COLUMN] * factor, MAX_HOUSE_VALUE)
    return burst


@pytest.fixture
def world(tmp_path: Path, models: RegisteredModels) -> LabelledWorld:
    return LabelledWorld(tmp_path, models)


def test_poisoning_burst_is_held_then_rejected_and_never_reaches_training_data(world: LabelledWorld) -> None:
    honest = world.label(make_scenario(world.trusted, "stable", 1_000, seed=1))
    poisoned = world.label(poisoned_inland(world.trusted, 1_500, 1.5, seed=2))

    first = world.run()
    verdicts = checks(first)
    assert verdicts[SCHEMA_CHECK].passed and verdicts[VOLUME_CHECK].passed
    consistency = verdicts[CONSISTENCY_CHECK]
    assert not consistency.passed
    # One source (no tokens yet): its INLAND slice is held, the honest INLAND rows in it too (a person
    # releases them); its other slices are judged on their own and admitted.
    assert "source unattributed, ocean_proximity=INLAND" in consistency.description
    metadata = consistency.metadata
    assert bare_numbers(metadata) == []
    assert metadata["held_by_source"].value.keys() == {"unattributed"}
    assert metadata["held_rows_raw"].value >= 1_500
    assert 1.3 < metadata["largest_median_ratio_raw"].value < 1.6  # the burst, diluted by honest INLAND rows
    # Labels sent without a token (or before the store had the column) are one source, and it says so.
    assert "feedback_token" in metadata["source_key"].value and "unattributed" in metadata["source_key"].value
    # Blocking: the retraining would stop here, before training_data.
    assert not first.asset_materializations_for_node("training_data")

    admitted = set(world.value("labelled_traffic")["request_id"])
    assert admitted.isdisjoint(poisoned) and admitted <= set(honest) and len(admitted) >= 600

    reviews, store = world.reviews()
    try:
        held = reviews.batches(HELD)
        assert len(held) == 1 and held.iloc[0]["rule"] == "consistency"
        reviews.decide(int(held.iloc[0]["batch_id"]), approve=False, by="reviewer", why="one client, +50% INLAND")
        assert reviews.batches(REJECTED).iloc[0]["decided_by"] == "reviewer"
    finally:
        store.dispose()

    second = world.run()
    assert all(e.passed for e in second.get_asset_check_evaluations())  # nothing new to judge
    training = second.asset_materializations_for_node("training_data")[0].metadata
    assert training["feedback_rows_raw"].value == len(admitted)
    assert set(world.value("labelled_traffic")["request_id"]).isdisjoint(poisoned)


def test_honest_stable_and_income_shift_labels_are_admitted(world: LabelledWorld) -> None:
    world.label(make_scenario(world.trusted, "stable", 1_000, seed=3))
    world.label(make_scenario(world.trusted, "income_shift", 1_500, seed=4))
    result = world.run()
    assert all(e.passed for e in result.get_asset_check_evaluations()), [
        e.description for e in result.get_asset_check_evaluations() if not e.passed
    ]
    assert result.asset_materializations_for_node("training_data")[0].metadata["feedback_rows_raw"].value == 2_500


def test_approved_batch_flows_into_the_next_labelled_traffic(world: LabelledWorld) -> None:
    inflated = world.label(make_scenario(world.trusted, "price_inflation", 400, seed=5))
    first = world.run()
    assert not checks(first)[CONSISTENCY_CHECK].passed
    assert set(world.value("labelled_traffic")["request_id"]).isdisjoint(inflated)

    reviews, store = world.reviews()
    try:
        batch = int(reviews.batches(HELD).iloc[0]["batch_id"])
        decided = reviews.decide(batch, approve=True, by="analyst", why="prices really rose 30%")
        assert (decided["status"], decided["decided_by"]) == (APPROVED, "analyst")
    finally:
        store.dispose()

    second = world.run()
    assert second.success
    released = world.value("labelled_traffic")
    assert set(inflated) <= set(released["request_id"])
    assert set(released.loc[released["request_id"].isin(inflated), "label_status"]) == {APPROVED}
    assert second.asset_materializations_for_node("training_data")[0].metadata["feedback_rows_raw"].value == 400


def test_a_source_over_its_daily_volume_is_held(world: LabelledWorld) -> None:
    world.label(make_scenario(world.trusted, "stable", 300, seed=6))
    result = world.run({"ops": {"labelled_traffic": {"config": {"max_labels_per_source_per_day": 200}}}})
    volume = checks(result)[VOLUME_CHECK]
    assert not volume.passed and "sent 300 labels" in volume.description and "limit 200 per day" in volume.description
    assert world.value("labelled_traffic").empty


def test_labels_outside_the_schema_are_held_naming_the_rule(world: LabelledWorld) -> None:
    # Defence in depth for rows stored before the API refused them (or written by other means).
    honest = make_scenario(world.trusted, "stable", 300, seed=7)
    absurd = honest.head(10).assign(**{TARGET_COLUMN: 1e300})
    world.label(honest)
    absurd_ids = world.label(absurd)
    result = world.run()
    schema = checks(result)[SCHEMA_CHECK]
    assert not schema.passed and "10 of 310 new labels break the schema" in schema.description
    assert "median_house_value" in schema.description
    assert set(world.value("labelled_traffic")["request_id"]).isdisjoint(absurd_ids)


def test_with_tokens_only_the_poisoning_token_is_held(world: LabelledWorld) -> None:
    honest = world.label(make_scenario(world.trusted, "stable", 1_000, seed=8), token_id="honest01")
    poisoned = world.label(poisoned_inland(world.trusted, 1_500, 1.5, seed=9), token_id="poison01")
    result = world.run()
    consistency = checks(result)[CONSISTENCY_CHECK]
    assert not consistency.passed and consistency.metadata["held_by_source"].value == {"poison01": 1_500}
    assert "source poison01, ocean_proximity=INLAND: 1,500 labels" in consistency.description
    # The honest token's INLAND rows are judged on their own (source x slice) and admitted.
    assert set(world.value("labelled_traffic")["request_id"]) == set(honest)
    assert set(honest).isdisjoint(poisoned)
