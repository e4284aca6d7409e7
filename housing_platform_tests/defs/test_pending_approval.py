"""Label shift needs a human: a raw file with every price × 1.25 trains a version that waits for a person.

The real graph (ingestion → training → gate → registry) on a real Dagster instance and a real MLflow
registry in a temp state folder, fed a small synthetic raw CSV and then the same CSV with every price
× 1.25, clipped to the schema's maximum (every row stays valid: the data gate cannot see it). The gate's
quality limits are opened wide, so the outcome does not depend on how well a 3-epoch network trains
here: what is tested is what happens to a version that passes the gate on shifted labels. The
decisions are made with the real `housing-platform approve|reject` commands.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from housing_platform.adapters.mlflow_registry import (
    APPROVAL_STATUS_TAG,
    MODEL_NAME,
    PENDING_APPROVAL_ALIAS,
    PENDING_REASON_TAG,
    PREVIOUS_ALIAS,
    PROMOTED_AT_TAG,
    TRAINING_LABEL_STATS_TAG,
    ModelRegistry,
)
from housing_platform.cli.main import main
from housing_platform.cli.versions import (
    DECIDED_AT_TAG,
    DECIDED_BY_TAG,
    DECISION_REASON_TAG,
    EXIT_DECIDED,
    EXIT_REFUSED,
)
from housing_platform.config.settings import HousingSettings
from housing_platform.core.label_shift import parse_statistics
from housing_platform.core.model_gate import GATE_CHECKS, GOLDEN_CHECK
from housing_platform.core.schema import MAX_HOUSE_VALUE, TARGET_COLUMN
from housing_platform.defs.definitions import build_definitions
from housing_platform.defs.registry.checks import LABEL_SHIFT_CHECK
from housing_platform.devtools.loop import TRAINING_SELECTION
from housing_platform_tests.factories import make_districts

pytestmark = pytest.mark.slow

ROWS = 2_400  # ~600 per ocean_proximity class: above min_label_shift_rows, so each class is compared
# Every model meets these quality limits; the golden-holdout margin and the label-shift limits keep their defaults.
OPEN_GATE = {"max_rmse_dollars": 1e12, "min_improvement_over_baseline": -1e6, "max_regression_vs_champion": 1e6,
             "max_slice_rmse_ratio": 1e6}
RUN_CONFIG = {
    # rollout=direct: these tests are about approval and automatic promotion; the last one sets canary.
    "ops": {"trained_model": {"config": {"epochs": 3}}, "evaluation_report": {"config": OPEN_GATE},
            "registered_model_version": {"config": {"rollout": "direct"}}},
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}


class Platform:
    def __init__(self, settings: HousingSettings, instance: dg.DagsterInstance):
        self.settings, self.instance = settings, instance
        self.defs = build_definitions(settings)
        self.registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)

    def train(self, run_config: dict = RUN_CONFIG) -> dg.ExecuteInProcessResult:
        result = dg.materialize([*self.defs.assets, *self.defs.asset_checks], selection=TRAINING_SELECTION,
                                instance=self.instance, resources=self.defs.resources, run_config=run_config,
                                raise_on_error=False)
        assert result.success, [str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure]
        return result

    def aliases(self, version: str) -> set[str]:
        return set(self.registry.aliases_of(version))

    def scale_prices(self, factor: float) -> None:
        frame = pd.read_csv(self.settings.data_path)
        frame[TARGET_COLUMN] = (frame[TARGET_COLUMN] * factor).clip(upper=MAX_HOUSE_VALUE)
        frame.to_csv(self.settings.data_path, index=False)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("pending_state")
    csv = home.parent / f"{home.name}.csv"
    make_districts(ROWS, seed=0).to_csv(csv, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOUSING_HOME", str(home))
        patch.setenv("HOUSING_DATA_PATH", str(csv))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        with dg.instance_for_test() as instance:
            platform = Platform(HousingSettings.from_env(), instance)
            first = platform.train()
            assert platform.registry.champion().version == "1"
            assert checks(first)[LABEL_SHIFT_CHECK].passed  # nothing to compare with yet
            platform.scale_prices(1.25)
            yield platform


@pytest.fixture(scope="module")
def held(platform: Platform) -> dg.ExecuteInProcessResult:
    """Version 2, trained on the prices × 1.25."""
    return platform.train()


def test_a_version_trained_on_prices_times_1_25_waits_in_pending_approval(platform: Platform, held) -> None:
    assert platform.registry.champion().version == "1"
    assert platform.aliases("2") == {PENDING_APPROVAL_ALIAS}
    tags = platform.registry.get_version("2").tags
    assert tags[APPROVAL_STATUS_TAG] == "pending"
    assert tags[PENDING_REASON_TAG].startswith("label shift: the median price moved by more than 5%")
    assert "INLAND: median $" in tags[PENDING_REASON_TAG] and "(+25.0%" in tags[PENDING_REASON_TAG]
    # Every version records what it learned from, so the next one can be compared with it.
    assert parse_statistics(tags[TRAINING_LABEL_STATS_TAG])["by_category"]["INLAND"]["rows"] >= 500
    assert PROMOTED_AT_TAG not in tags

    gate = {name: check for name, check in checks(held).items() if name in GATE_CHECKS}
    assert set(gate) == set(GATE_CHECKS)
    # The pinned golden labels are the old ones: worse there is a question for a person, never a block.
    assert all(c.passed or c.severity == dg.AssetCheckSeverity.WARN for c in gate.values())
    assert all(c.passed for name, c in gate.items() if name != GOLDEN_CHECK)

    check = checks(held)[LABEL_SHIFT_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN and not check.blocking
    description = check.description
    assert description.startswith("Version 2 waits in `pending_approval`: `housing-platform approve 2`")
    assert "Label shift: the median price moved by more than 5%" in description
    report = platform.defs.load_asset_value("evaluation_report", instance=platform.instance)
    golden = report["golden_holdout"]
    assert (f"golden holdout RMSE ${golden['metrics']['rmse']:,.0f} vs champion "
            f"${golden['champion_metrics']['rmse']:,.0f} on {golden['rows']:,} pinned rows") in description
    assert f"Test split RMSE ${report['metrics']['rmse']:,.0f} vs champion v1" in description
    assert check.metadata["median_change_INLAND_raw"].value == pytest.approx(0.25, abs=0.01)
    materialization = held.asset_materializations_for_node("registered_model_version")[0]
    assert materialization.metadata["pending_approval"].value is True


def test_reject_leaves_champion_untouched_and_records_the_decision(platform: Platform, held, capsys) -> None:
    assert main(["reject", "2", "--reason", "prices were mis-scaled upstream", "--by", "alice"]) == EXIT_DECIDED
    assert "version 2 rejected by alice; champion stays v1" in capsys.readouterr().out
    assert platform.registry.champion().version == "1"
    assert platform.aliases("2") == set()
    tags = platform.registry.get_version("2").tags
    assert (tags[APPROVAL_STATUS_TAG], tags[DECIDED_BY_TAG], tags[DECISION_REASON_TAG]) == (
        "rejected", "alice", "prices were mis-scaled upstream")
    assert datetime.fromisoformat(tags[DECIDED_AT_TAG]).tzinfo is not None
    # A decided version cannot be decided again.
    assert main(["approve", "2"]) == EXIT_REFUSED
    assert "version 2 is not waiting for approval" in capsys.readouterr().err
    assert platform.registry.champion().version == "1"


def test_approve_promotes_the_held_version_through_the_verified_path(platform: Platform, held, capsys,
                                                                     monkeypatch) -> None:
    platform.train()  # version 3: the same shifted prices, still compared with champion v1's labels
    assert platform.aliases("3") == {PENDING_APPROVAL_ALIAS} and platform.registry.champion().version == "1"
    monkeypatch.setenv("USER", "bob")

    assert main(["approve", "3", "--reason", "the 2026 survey: prices really rose"]) == EXIT_DECIDED

    assert "version 3 approved by bob: it is champion (v1 is previous)" in capsys.readouterr().out
    assert platform.registry.champion().version == "3"
    assert platform.registry.version_by_alias(PREVIOUS_ALIAS).version == "1"
    assert platform.aliases("3") == {"champion"}
    tags = platform.registry.get_version("3").tags
    assert tags[APPROVAL_STATUS_TAG] == "approved" and tags[DECIDED_BY_TAG] == "bob" and tags[PROMOTED_AT_TAG]
    # The server's fallback follows the champion, as after an automatic promotion.
    assert json.loads(platform.settings.fallback_baseline_path.read_text())["model_version"] == "3"


def test_after_approval_the_new_labels_are_the_yardstick_and_promotion_is_automatic_again(platform: Platform) -> None:
    assert platform.registry.champion().version == "3", "runs after the approval test"
    result = platform.train()  # version 4: the same shifted prices champion v3 learned from
    assert len(platform.registry.client.search_model_versions(f"name='{MODEL_NAME}'")) == 4
    assert platform.registry.champion().version == "4" and platform.aliases("4") == {"champion"}
    assert APPROVAL_STATUS_TAG not in platform.registry.get_version("4").tags
    assert checks(result)[LABEL_SHIFT_CHECK].passed
    assert checks(result)[LABEL_SHIFT_CHECK].description.startswith("No label shift: every median price within 5%")


def test_the_label_shift_check_is_registered_with_its_defaults(platform: Platform) -> None:
    spec = platform.defs.resolve_asset_graph().get_check_spec(
        dg.AssetCheckKey(dg.AssetKey("registered_model_version"), LABEL_SHIFT_CHECK))
    assert "within 5% of the champion's training data" in spec.description
    assert "with ≥ 500 rows" in spec.description
    assert Path(platform.settings.home, "golden_holdout", "manifest.json").is_file()


def test_with_rollout_canary_a_passing_version_becomes_challenger_and_every_move_is_recorded(platform: Platform) -> None:
    from housing_platform.adapters.alias_moves import (
        CHALLENGE,
        HOLD,
        PROMOTE,
        REJECT,
        ROLLOUT_SHARE_TAG,
        ROLLOUT_TAG,
        alias_history,
    )

    assert platform.registry.champion().version == "4", "runs after the automatic promotion of version 4"
    canary = {**RUN_CONFIG, "ops": {**RUN_CONFIG["ops"],
                                    "registered_model_version": {"config": {"rollout": "canary", "rollout_share": 0.2}}}}
    result = platform.train(canary)  # version 5: passes the gate, needs no approval
    assert platform.aliases("5") == {"challenger"} and platform.registry.champion().version == "4"
    tags = platform.registry.get_version("5").tags
    assert (tags[ROLLOUT_TAG], tags[ROLLOUT_SHARE_TAG]) == ("canary", "0.2") and PROMOTED_AT_TAG not in tags
    materialization = result.asset_materializations_for_node("registered_model_version")[0]
    assert materialization.metadata["challenger"].value is True and materialization.metadata["promoted"].value is False
    moves = [(e.action, e.version, e.by.split(" ")[0]) for e in alias_history(platform.registry)]
    # v1 promoted by the pipeline (rollout=direct, the default); v2 held, then rejected by a person; v3 held,
    # then approved by a person; v4 promoted by the pipeline again; v5 challenger.
    assert moves == [(PROMOTE, "1", "dagster"), (HOLD, "2", "dagster"), (REJECT, "2", "cli"), (HOLD, "3", "dagster"),
                     (PROMOTE, "3", "cli"), (PROMOTE, "4", "dagster"), (CHALLENGE, "5", "dagster")]
    assert alias_history(platform.registry)[-1].by == f"dagster run {result.run_id}"
