"""The platform's verdict on a day of drift: one wording, shared by the HTML report and Dagster's metadata,
that states the check's result, every rule with its numbers, the sample and the noise floor; the HTML
report opens with it, never says Evidently's contradicting headline, and stays small."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core.drift import JSON_SUMMARY_KEY, DriftResult, compute_drift
from housing_platform.core.drift_history import FollowUp, history_day, history_html, history_markdown
from housing_platform.core.drift_report_html import LIB_FILE, LIB_FOLDER
from housing_platform.core.drift_rules import RULES
from housing_platform.core.drift_verdict import CHECK_NAME, drift_verdict
from housing_platform.core.numbers import CHANGE, COUNT, DOLLARS, MILLISECONDS, SCORE, SHARE, for_people
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.devtools.scenarios import make_scenario

MAX_DAY_HTML_BYTES = 1_000_000  # the budget for one day's page


def with_prediction(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(prediction=45_000.0 + 42_000.0 * frame["median_income"])


@pytest.fixture(scope="module")
def results() -> dict[str, DriftResult]:
    """A drifted day (income × 1.5) and a stable day of 1,000 rows against 3,000 reference rows."""
    valid = validate_housing_frame(read_housing_csv(DEFAULT_DATA_PATH)).valid
    order = np.random.default_rng(42).permutation(len(valid))
    reference = with_prediction(valid.iloc[order[:3_000]].reset_index(drop=True))
    held_out = valid.iloc[order[-2_000:]].reset_index(drop=True)
    return {
        name: compute_drift(reference, with_prediction(make_scenario(held_out, name, 1_000, 0)))
        for name in ("income_shift", "stable")
    } | {"quiet": compute_drift(reference, with_prediction(make_scenario(held_out, "stable", 50, 0)))}


def test_the_headline_states_the_checks_result_and_the_rules_that_fired(results) -> None:
    drifted, stable = results["income_shift"], results["stable"]
    assert not drifted.check_passed and stable.check_passed
    assert drifted.platform_verdict().headline == f"Check {CHECK_NAME} failed: drift ({', '.join(drifted.rules_fired)})"
    assert stable.platform_verdict().headline == f"Check {CHECK_NAME} passed: no drift"
    assert results["quiet"].platform_verdict().headline == f"Check {CHECK_NAME} passed: insufficient data"


def test_every_rule_is_listed_with_its_numbers_and_only_fired_rules_say_fired(results) -> None:
    result = results["income_shift"]
    verdict = result.platform_verdict()
    assert [line.rule for line in verdict.rules] == list(RULES)
    assert {line.rule for line in verdict.rules if line.fired} == set(result.rules_fired)
    income = result.table.set_index("column").loc["median_income"]
    key_line = next(line for line in verdict.rules if line.rule == "key_feature").text
    assert f"score {income.score:.3f} vs threshold {income.threshold:.3f}" in key_line
    share_line = next(line for line in verdict.rules if line.rule == "dataset_share").text
    assert f"{len(result.drifted_columns)} of 9 features drifted" in share_line and "fires at ≥ 50.0%" in share_line
    assert verdict.sample.startswith("1,000 current rows against 3,000 reference rows")
    assert "99% quantile" in verdict.noise_floor


def test_markdown_and_html_are_renderings_of_the_same_verdict(results) -> None:
    verdict = results["income_shift"].platform_verdict()
    markdown, page = verdict.to_markdown(), verdict.to_html()
    assert markdown.startswith(f"## {verdict.headline}\n")
    assert f"<h1>{verdict.headline}</h1>" in page
    for line in verdict.rules:
        assert line.text in markdown
        assert line.text.replace(">", "&gt;").replace("<", "&lt;") in page
    # The verdict is a function of the summary alone: the JSON report's copy gives the same one.
    assert drift_verdict(json.loads(json.dumps(results["income_shift"].summary()))) == verdict


@pytest.mark.parametrize("name", ["income_shift", "stable"])
def test_the_html_opens_with_the_verdict_and_never_with_evidentlys_contradicting_headline(
    results, name: str, tmp_path: Path
) -> None:
    result = results[name]
    html_path, json_path = result.write_reports(tmp_path / "day.html", tmp_path / "day.json")
    page = html_path.read_text(encoding="utf-8")
    first_heading = re.search(r"<h1>(.*?)</h1>", page).group(1)
    assert first_heading == result.platform_verdict().headline
    assert "Dataset Drift is NOT detected" not in page and "Dataset Drift is detected" not in page
    assert "Evidently's dataset-drift rule" in page
    # Small: Evidently's viewer is shared beside the page, linked relatively (the folder stays relocatable).
    assert html_path.stat().st_size < MAX_DAY_HTML_BYTES
    assert (tmp_path / LIB_FOLDER / LIB_FILE).is_file() and f"src='{LIB_FOLDER}/{LIB_FILE}'" in page
    assert str(tmp_path) not in page
    # The JSON keeps the full metrics beside the verdict.
    payload = json.loads(json_path.read_text())
    assert payload["metrics"] and payload[JSON_SUMMARY_KEY]["check_passed"] is result.check_passed


def test_insufficient_data_writes_a_page_with_the_verdict_only(results, tmp_path: Path) -> None:
    html_path, _ = results["quiet"].write_reports(tmp_path / "q.html", tmp_path / "q.json")
    page = html_path.read_text(encoding="utf-8")
    assert f"<h1>Check {CHECK_NAME} passed: insufficient data</h1>" in page
    assert "50 current rows, fewer than min_rows=200" in page


def test_numbers_read_as_people_read_them() -> None:
    assert for_people(43640.65335861016, DOLLARS) == "$43,640.65"
    assert for_people(-1234.5, DOLLARS) == "-$1,234.50"
    assert for_people(0.1111111111111111, SHARE) == "11.1%"
    assert (for_people(0.25, CHANGE), for_people(-0.0312, CHANGE)) == ("+25.0%", "-3.1%")
    assert for_people(0.59987, SCORE) == "0.600"
    assert for_people(12345, COUNT) == "12,345"
    assert for_people(12.34, MILLISECONDS) == "12.3 ms"
    assert for_people(float("nan"), DOLLARS) == for_people(None, SCORE) == "n/a"
    with pytest.raises(ValueError, match="unknown kind of number 'euros'"):
        for_people(1.0, "euros")


def test_the_history_marks_failed_days_and_lists_what_followed(results) -> None:
    follow_up = FollowUp(run_id="0123456789abcdef", run_status="SUCCESS", run_url="http://ui/runs/0123456789abcdef",
                         version="2", gate="passed", rollout="champion", version_url="http://mlflow/versions/2")
    days = [
        history_day("2026-11-28", None),
        history_day("2026-11-29", results["stable"].summary(), live_rmse=48_123.4, labelled_rows=600),
        history_day("2026-11-30", results["income_shift"].summary(), follow_ups=(follow_up,)),
    ]
    assert [day.failed for day in days] == [False, False, True]
    assert days[2].ratios["median_income"] >= 1.0 > days[1].ratios["median_income"]
    page = history_html(days, b"png", "version 2 (champion)")
    assert "<h1>Drift history: 1 of 3 days failed no_feature_drift</h1>" in page
    assert "<tr class='failed' data-day='2026-11-30'>" in page and "$48,123.40" in page
    assert "href='http://ui/runs/0123456789abcdef'" in page and "gate passed → version 2, champion" in page
    markdown = history_markdown(days, "version 2 (champion)")
    assert "**1 of 3 days failed `no_feature_drift`**" in markdown and "[MLflow](http://mlflow/versions/2)" in markdown


def test_a_failed_day_no_run_answered_says_so() -> None:
    summary = {"verdict": "drift", "check_passed": False, "rules_fired": ["key_feature"], "table": [],
               "current_rows": 300}
    day = history_day("2026-11-30", summary)
    assert "no retraining run answered it" in history_html([day], b"", "no champion")
