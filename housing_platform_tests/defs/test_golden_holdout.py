"""The golden holdout is chosen once from the validated base rows, pinned, and then only verified.

Real assets (raw CSV → validated rows → golden_holdout) on a real Dagster instance, with a small
synthetic CSV: a changed raw file (prices × 1.25, rows added) does not move the holdout's rows or
labels; an edited label, an edited feature or a consistently re-hashed replacement fails the run,
naming what differs; deleting the pin on purpose pins afresh and records the hash it replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from housing_platform.config.settings import HousingSettings
from housing_platform.core.golden_holdout import ROW_HASH_COLUMN, golden_manifest, select_golden_rows
from housing_platform.core.schema import MAX_HOUSE_VALUE, TARGET_COLUMN
from housing_platform.core.splits import assign_split
from housing_platform.core.validation import validate_housing_frame
from housing_platform.defs.ingestion import assets as ingestion
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.resources import HousingStateResource
from housing_platform.defs.training.golden import MANIFEST_FILE, ROWS_FILE, golden_folder, golden_holdout
from housing_platform_tests.factories import make_districts
from housing_platform_tests.support import bare_numbers

ROWS = 1_500  # above the data gate's 1,000-row minimum


class Pin:
    """One state folder, one instance, one raw CSV the test rewrites."""

    def __init__(self, settings: HousingSettings, instance: dg.DagsterInstance, csv: Path):
        self.settings, self.instance, self.csv = settings, instance, csv
        self.folder = golden_folder(settings.home)

    def materialize(self) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [ingestion.raw_housing_data, ingestion.validated_housing_data, golden_holdout],
            instance=self.instance,
            resources={
                "housing_state": HousingStateResource(home=str(self.settings.home), data_path=str(self.csv)),
                "io_manager": ParquetJsonIOManager(base_dir=str(self.settings.storage_dir)),
            },
            raise_on_error=False,
        )

    def value(self, result: dg.ExecuteInProcessResult) -> pd.DataFrame:
        assert result.success, self.failure(result)
        return result.output_for_node("golden_holdout")

    @staticmethod
    def failure(result: dg.ExecuteInProcessResult) -> str:
        return "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)

    @staticmethod
    def metadata(result: dg.ExecuteInProcessResult) -> dict:
        return {k: v.value for k, v in result.asset_materializations_for_node("golden_holdout")[0].metadata.items()}


@pytest.fixture
def pin(housing_settings: HousingSettings, tmp_path: Path):
    csv = tmp_path / "raw.csv"
    make_districts(ROWS, seed=0).to_csv(csv, index=False)
    with dg.instance_for_test() as instance:
        yield Pin(housing_settings, instance, csv)


@pytest.fixture
def pinned(pin: Pin) -> pd.DataFrame:
    first = pin.materialize()
    assert pin.metadata(first)["pinned_in_this_run"] is True
    return pin.value(first)


def test_the_holdout_is_the_validated_base_rows_of_the_test_buckets_pinned_with_relative_paths(pin: Pin, pinned) -> None:
    validated = validate_housing_frame(pd.read_csv(pin.csv)).valid
    assert (assign_split(pinned).to_numpy() == "test").all()  # never trained on, by the same hash split
    pd.testing.assert_frame_equal(pinned, select_golden_rows(validated))
    assert 0.15 * ROWS < len(pinned) < 0.25 * ROWS
    manifest = json.loads((pin.folder / MANIFEST_FILE).read_text())
    assert manifest["file"] == ROWS_FILE and not Path(manifest["file"]).is_absolute()
    assert {k: manifest[k] for k in ("rows", "row_hashes_sha256", "content_sha256")} == {
        k: golden_manifest(pinned)[k] for k in ("rows", "row_hashes_sha256", "content_sha256")
    }


def test_a_changed_raw_file_changes_neither_the_rows_nor_their_labels(pin: Pin, pinned) -> None:
    frame = pd.read_csv(pin.csv)
    frame[TARGET_COLUMN] = (frame[TARGET_COLUMN] * 1.25).clip(upper=MAX_HOUSE_VALUE)
    pd.concat([frame, make_districts(300, seed=1)]).to_csv(pin.csv, index=False)

    again = pin.materialize()

    pd.testing.assert_frame_equal(pin.value(again), pinned)
    metadata = pin.metadata(again)
    assert metadata["pinned_in_this_run"] is False
    assert bare_numbers(metadata) == []
    assert metadata["labels_changed_in_current_data_raw"] > 0.9 * len(pinned)  # all but those clipped at both ends
    assert 1.2 < metadata["median_label_ratio_current_to_pinned_raw"] <= 1.25


def test_an_edited_label_or_feature_in_the_pin_fails_the_run_naming_it(pin: Pin, pinned) -> None:
    path = pin.folder / ROWS_FILE
    label_edit = pinned.copy()
    label_edit.loc[0, TARGET_COLUMN] *= 2
    label_edit.to_parquet(path, index=False)
    result = pin.materialize()
    assert not result.success
    assert "the pinned golden holdout was changed" in pin.failure(result)
    assert "content sha256" in pin.failure(result)

    feature_edit = pinned.copy()
    feature_edit.loc[3, "median_income"] += 1.0
    feature_edit.to_parquet(path, index=False)
    message = pin.failure(pin.materialize())
    assert "the feature values of 1 rows no longer match their recorded row hash" in message


def test_a_consistently_rehashed_replacement_is_caught_by_the_instance_record(pin: Pin, pinned) -> None:
    forged = pinned.iloc[1:].reset_index(drop=True)  # one row dropped, manifest rewritten to match
    forged.to_parquet(pin.folder / ROWS_FILE, index=False)
    manifest = json.loads((pin.folder / MANIFEST_FILE).read_text())
    (pin.folder / MANIFEST_FILE).write_text(json.dumps({**manifest, **golden_manifest(forged)}))
    message = pin.failure(pin.materialize())
    assert "was replaced" in message and manifest["content_sha256"] in message


def test_deleting_the_pin_on_purpose_pins_afresh_and_records_what_it_replaced(pin: Pin, pinned) -> None:
    old = json.loads((pin.folder / MANIFEST_FILE).read_text())["content_sha256"]
    make_districts(ROWS, seed=2).to_csv(pin.csv, index=False)
    for file in pin.folder.iterdir():
        file.unlink()
    result = pin.materialize()
    fresh = pin.value(result)
    assert not fresh[ROW_HASH_COLUMN].isin(pinned[ROW_HASH_COLUMN]).any()
    assert pin.metadata(result)["replaced_content_sha256"] == old
