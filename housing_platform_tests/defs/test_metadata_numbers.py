"""Every number in asset and check metadata reads as people read numbers, with the raw value beside it.

Checks and assets run on tiny data (the data gate on 200 districts, the promotion gate on a hand-made
evaluation report) or their results are built from hand-made domain objects (the fast-path and label-shift
checks, the rollout decision, a rollback's evidence). `support.bare_numbers` names any entry a person
would read as an unformatted number; the test also checks that what it examined holds check metadata.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from housing_platform.config.settings import HousingSettings
from housing_platform.core.model_gate import GATE_CHECKS, SLICE_CHECK
from housing_platform.core.rollout import SHADOW, WAIT, Comparison, Decision, SliceResult
from housing_platform.defs.ingestion import assets as ingestion
from housing_platform.defs.ingestion.checks import VALIDATION_CHECKS
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.metadata import COUNT, DOLLARS, number_metadata
from housing_platform.defs.registry.checks import (
    FAST_PATH_CHECK,
    LABEL_SHIFT_CHECK,
    FastPathVerdict,
    fast_path_check_result,
    label_shift_check_result,
)
from housing_platform.defs.resources import HousingStateResource
from housing_platform.defs.rollout.checks import DECISION_CHECK, decision_check_result
from housing_platform.defs.rollout.sensors import evidence_metadata
from housing_platform.defs.training.checks import gate_checks
from housing_platform.scoring.verification import SkewCheck
from housing_platform_tests.core.test_model_gate import report
from housing_platform_tests.defs.test_registry_checks import _report as label_shift_report
from housing_platform_tests.support import bare_numbers, raw_numbers

CHAMPION = {"version": "3", "model_sha256": "older", "metrics": {"rmse": 47_912.3456}}
GOLDEN = {"rows": 4_000, "content_sha256": "pinned", "metrics": {"rmse": 44_123.4567},
          "champion_metrics": {"rmse": 43_987.6543}}


def test_the_rule_flags_bare_numbers_and_accepts_a_number_beside_its_rendering() -> None:
    assert bare_numbers({"rmse": 43_640.65335861016, "share": dg.MetadataValue.float(0.1111)}) == ["rmse", "share"]
    assert bare_numbers({"rows": dg.MetadataValue.int(20_640), "printed": "0.123456"}) == ["rows", "printed"]
    assert bare_numbers({"rmse": "$43,640.65", "rmse_raw": 43_640.7}) == ["rmse_raw"]  # not that number's text
    people = {**number_metadata("rmse", 43_640.65335861016, DOLLARS), **number_metadata("rows", 20_640, COUNT),
              "dagster/row_count": dg.MetadataValue.int(20_640), "version": dg.MetadataValue.int(2)}
    assert bare_numbers(people) == [] and raw_numbers(people) == {"rmse_raw": 43_640.65335861016, "rows_raw": 20_640}


def _check_metadata_from_runs(settings: HousingSettings, districts_csv: Path) -> dict[str, dict]:
    """Check name -> metadata of the data gate (with its asset) and the promotion gate, run in Dagster."""
    resources = {"housing_state": HousingStateResource(home=str(settings.home), data_path=str(districts_csv)),
                 "io_manager": ParquetJsonIOManager(base_dir=str(settings.storage_dir))}
    config = {"ops": {"validated_housing_data": {"config": {"min_rows": 100}}}}
    ingested = dg.materialize([ingestion.raw_housing_data, ingestion.validated_housing_data], resources=resources,
                              run_config=config)
    assert ingested.success

    @dg.asset(name="evaluation_report")
    def hand_made_report() -> dict:
        return report(metrics={"rmse": 48_123.4567, "mae": 31_000.0, "r2": 0.83, "mape": 0.17},
                      champion=CHAMPION, golden_holdout=GOLDEN)

    gated = dg.materialize([hand_made_report, *gate_checks])
    assert gated.success
    found = {e.check_name: e.metadata for result in (ingested, gated) for e in result.get_asset_check_evaluations()}
    found.update({f"asset {m.asset_key.to_user_string()}": m.metadata
                  for node in ("raw_housing_data", "validated_housing_data")
                  for m in ingested.asset_materializations_for_node(node)})
    return found


def _check_metadata_from_builders() -> dict[str, dict]:
    """Check name -> metadata of the checks whose results are built from domain objects."""
    deviations, bounds = np.array([0.0123456, 0.0004321]), np.array([0.0310987, 0.0298765])
    skew = SkewCheck(2, deviations, bounds, np.array([1.0, 2.0]), np.array([1.0, 2.0]), ("a", "b"))
    verdict = FastPathVerdict("models:/housing_price_model/2", {"server": skew, "batch": skew},
                              {"server": "float64", "batch": "float32"})
    comparison = Comparison("paired", 1_234, 1_234, 48_123.4567, 47_012.3456, -0.04567, -0.01234, 0.0089, 0.95,
                            [SliceResult("ocean_proximity", "INLAND", 400, 400, 40_123.45, 41_234.56)],
                            divergence_dollars=3_456.789)
    decision = Decision(WAIT, "undecided", more_rows_needed=12_345, comparison=comparison)
    return {
        FAST_PATH_CHECK: fast_path_check_result(verdict, "2", promoted=True).metadata,
        LABEL_SHIFT_CHECK: label_shift_check_result(label_shift_report(shifted=True), "2", held=True).metadata,
        DECISION_CHECK: decision_check_result(decision, "1", "2", SHADOW, moved=False).metadata,
        "rollback event": evidence_metadata(decision.evidence()),
    }


@pytest.mark.slow
def test_check_and_asset_metadata_show_numbers_for_people_beside_their_raw_values(
    housing_settings: HousingSettings, districts_csv: Path
) -> None:
    examined = {**_check_metadata_from_runs(housing_settings, districts_csv), **_check_metadata_from_builders()}
    checks = {*VALIDATION_CHECKS, *GATE_CHECKS, FAST_PATH_CHECK, LABEL_SHIFT_CHECK, DECISION_CHECK}
    # Not vacuous: every check listed was examined, and each with numbers (the slice rule names slices
    # only) carries them for tools as well as for people.
    assert checks <= set(examined)
    assert [name for name in checks - {SLICE_CHECK} if not raw_numbers(examined[name])] == []
    assert {name: bare_numbers(metadata) for name, metadata in examined.items() if bare_numbers(metadata)} == {}
