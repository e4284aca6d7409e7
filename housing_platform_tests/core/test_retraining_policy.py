"""The retraining policy: one run per failure, a cooldown after each retraining, a daily budget."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from housing_platform.config.settings import RetrainingPolicy
from housing_platform.core.retraining_policy import CheckFailure, RetrainingRun, decide_retraining

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)
DRIFT = "drift_report:no_feature_drift"
QUALITY = "live_model_performance:no_quality_degradation"
# Only the rule under test holds: no cooldown, no budget limit.
UNLIMITED = RetrainingPolicy(cooldown_hours=0, daily_budget_runs=1_000)


def failure(evaluation_id: int, hours_ago: float, check: str = DRIFT, partition: str = "2026-11-20") -> CheckFailure:
    return CheckFailure(check, partition, evaluation_id, NOW - timedelta(hours=hours_ago))


def run(run_id: str, hours_ago: float, status: str = "SUCCESS", automatic: bool = True) -> RetrainingRun:
    return RetrainingRun(
        run_id=run_id,
        status=status,
        launched_at=NOW - timedelta(hours=hours_ago),
        active=status in {"QUEUED", "STARTED"},
        failed=status in {"FAILURE", "CANCELED"},
        automatic=automatic,
    )


def test_a_failure_no_run_answers_is_answered() -> None:
    new = failure(7, hours_ago=0.1)
    decision = decide_retraining([new], {}, [], NOW)
    assert decision.answer == new
    assert "evaluation 7" in decision.reason


def test_no_failure_nothing_to_answer() -> None:
    decision = decide_retraining([], {}, [], NOW)
    assert decision.answer is None and "no failed evaluation" in decision.reason


@pytest.mark.parametrize("status", ["QUEUED", "STARTED", "SUCCESS", "FAILURE", "CANCELED"])
def test_a_failure_a_tagged_run_answers_is_not_answered_again_whatever_its_status(status: str) -> None:
    # The answering run looks launched *before* the failure (a run storage whose clock is behind), so
    # only its tags say that it answers it.
    answered = failure(7, hours_ago=1)
    answer = run("a" * 32, hours_ago=1.5, status=status)
    decision = decide_retraining([answered], {answered.key: [answer]}, [], NOW, UNLIMITED)
    assert decision.answer is None
    assert f"is answered by run aaaaaaaa ({status}" in decision.reason


def test_a_failure_answered_by_a_failed_run_is_not_retried_and_the_reason_says_so() -> None:
    answered = failure(7, hours_ago=1)
    decision = decide_retraining([answered], {answered.key: [run("f" * 32, 0.5, "FAILURE")]}, [], NOW, UNLIMITED)
    assert decision.answer is None
    assert "FAILURE" in decision.reason and "not retried automatically" in decision.reason


def test_failures_evaluated_before_a_retraining_was_launched_are_covered_by_it() -> None:
    # A manual retraining (no tags) trained on everything the earlier failures saw.
    older, newer = failure(3, hours_ago=2, check=QUALITY), failure(4, hours_ago=1.5)
    decision = decide_retraining([older, newer], {}, [run("m" * 32, 1, automatic=False)], NOW, UNLIMITED)
    assert decision.answer is None
    assert decision.reason.count("is covered by run mmmmmmmm") == 2


def test_of_several_open_failures_the_newest_is_answered_and_the_others_are_counted() -> None:
    older, newer = failure(3, hours_ago=2, check=QUALITY), failure(4, hours_ago=1)
    decision = decide_retraining([older, newer], {}, [], NOW)
    assert decision.answer == newer
    assert decision.open_failures == (newer, older)
    assert "1 older open failure" in decision.reason


def test_within_the_cooldown_a_new_failure_waits_and_the_reason_says_until_when() -> None:
    new = failure(9, hours_ago=0.5)
    last = run("c" * 32, hours_ago=2)
    decision = decide_retraining([new], {}, [last], NOW, RetrainingPolicy(cooldown_hours=6, daily_budget_runs=3))
    assert decision.answer is None
    assert decision.next_allowed_at == NOW + timedelta(hours=4)
    assert "evaluation 9" in decision.reason
    assert "cooldown of 6 h" in decision.reason and "2026-11-20 19:00:00 UTC" in decision.reason


def test_after_the_cooldown_a_new_failure_is_answered() -> None:
    new = failure(9, hours_ago=0.5)
    decision = decide_retraining([new], {}, [run("c" * 32, hours_ago=6.01)], NOW, RetrainingPolicy(cooldown_hours=6))
    assert decision.answer == new


def test_the_cooldown_counts_from_a_manual_retraining_too() -> None:
    new = failure(9, hours_ago=0.5)  # evaluated after the manual run was launched: not covered by it
    decision = decide_retraining([new], {}, [run("m" * 32, 1, automatic=False)], NOW, RetrainingPolicy())
    assert decision.answer is None and "cooldown" in decision.reason and "daily budget" not in decision.reason


def test_once_the_daily_budget_is_used_a_new_failure_waits_until_the_next_utc_day() -> None:
    new = failure(9, hours_ago=0.1)
    today = [run(str(i) * 32, hours_ago=h) for i, h in ((1, 14), (2, 10), (3, 5))]
    yesterday = run("9" * 32, hours_ago=16)  # 23:00 the day before: not today's budget
    policy = RetrainingPolicy(cooldown_hours=1, daily_budget_runs=3)
    decision = decide_retraining([new], {}, [*today, yesterday], NOW, policy)
    assert decision.answer is None
    assert "daily budget is used: 3 of 3" in decision.reason
    assert decision.next_allowed_at == datetime(2026, 11, 21, tzinfo=timezone.utc)
    assert "2026-11-21 00:00:00 UTC" in decision.reason
    # Manual retrainings hold the cooldown but do not spend the automatic budget.
    manual = [run(str(i) * 32, hours_ago=h, automatic=False) for i, h in ((1, 14), (2, 10), (3, 5))]
    assert decide_retraining([new], {}, manual, NOW, policy).answer == new


def test_a_budget_of_zero_stops_automatic_retraining() -> None:
    decision = decide_retraining([failure(9, 0.1)], {}, [], NOW, RetrainingPolicy(daily_budget_runs=0))
    assert decision.answer is None and "never while daily_budget_runs is 0" in decision.reason


def test_no_new_run_while_one_is_in_progress() -> None:
    new = failure(9, hours_ago=0.1)
    running = run("r" * 32, hours_ago=0.2, status="STARTED", automatic=False)
    decision = decide_retraining([new], {}, [running], NOW, UNLIMITED)
    assert decision.answer is None
    assert "run rrrrrrrr (STARTED" in decision.reason and "in progress" in decision.reason
