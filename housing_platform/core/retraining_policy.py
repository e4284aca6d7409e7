"""When a failed monitoring check may launch a retraining run: once per failure, a cooldown, a daily budget.

Pure: the decision is a function of the failed check evaluations, the runs that already answer them,
the recent retraining runs and the time, so any ticker (the daemon, `make demo`, a test, a sensor
whose cursor was reset) that reads the same instance decides the same way. The Dagster sensor
(`defs/sensors.py`) only reads those from the instance and turns the decision into a run request or
a skip reason. The limits are :class:`~housing_platform.config.settings.RetrainingPolicy`.

The rules, in order:

1. A failure is answered by a run that carries its tags (check, partition, evaluation id), whatever
   that run's status: queued, running, succeeded, failed or canceled. A failed answer is not retried
   automatically; the next evaluation of the check, if it fails again, is a new failure.
2. A failure is also answered by any retraining run launched after it was evaluated: that run
   trains on every labelled capture there was when it started, so a second run would learn nothing
   the first did not.
3. Of several open failures the newest is answered (the run's tags name it); the older ones are
   covered by the same run (rule 2).
4. No run while a retraining run is queued or running; none within ``cooldown_hours`` of the last
   retraining launch; none once ``daily_budget_runs`` automatic runs were launched this UTC day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from housing_platform.config.settings import RetrainingPolicy

# Answered failures listed by name in a skip reason; the rest are counted.
LISTED_FAILURES = 3


@dataclass(frozen=True)
class CheckFailure:
    """One failed evaluation of a watched check.

    ``evaluation_id`` is the instance's id of the evaluation record: the same for every reader of the
    instance, and kept when a planned (running) record becomes the evaluated one.
    """

    check: str
    partition: str | None
    evaluation_id: int
    evaluated_at: datetime
    description: str = ""
    details: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str | None, int]:
        return (self.check, self.partition, self.evaluation_id)

    def label(self) -> str:
        partition = f"partition {self.partition}, " if self.partition else ""
        return f"{self.check} ({partition}evaluation {self.evaluation_id}, {when(self.evaluated_at)})"


@dataclass(frozen=True)
class RetrainingRun:
    """A run of the retraining job, as far as the policy needs to know it."""

    run_id: str
    status: str
    launched_at: datetime
    active: bool = False  # queued or running
    failed: bool = False  # ended without success (failed or canceled)
    automatic: bool = False  # launched to answer a check failure: counts against the daily budget

    def label(self) -> str:
        return f"run {self.run_id[:8]} ({self.status}, launched {when(self.launched_at)})"


@dataclass(frozen=True)
class RetrainingDecision:
    """``answer`` is the failure to launch a retraining run for, or None with the reason why not."""

    answer: CheckFailure | None
    reason: str
    open_failures: tuple[CheckFailure, ...] = ()
    next_allowed_at: datetime | None = None


def when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def utc_day_start(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _answered(failure: CheckFailure, by_tags: Sequence[RetrainingRun], latest: RetrainingRun | None) -> str | None:
    """Why ``failure`` needs no new run, or None when it is open."""
    if by_tags:
        run = max(by_tags, key=lambda r: r.launched_at)
        text = f"{failure.label()} is answered by {run.label()}"
    elif latest is not None and latest.launched_at >= failure.evaluated_at:
        run = latest
        text = f"{failure.label()} is covered by {run.label()}, launched after it was evaluated"
    else:
        return None
    if run.failed:
        text += "; a failure is not retried automatically: re-execute that run from the Dagster UI to retry"
    return text


def _listed(lines: list[str]) -> str:
    shown = "; ".join(lines[:LISTED_FAILURES])
    if len(lines) > LISTED_FAILURES:
        shown += f"; and {len(lines) - LISTED_FAILURES} more"
    return shown


def decide_retraining(
    failures: Sequence[CheckFailure],
    answered_by: Mapping[tuple[str, str | None, int], Sequence[RetrainingRun]],
    runs: Sequence[RetrainingRun],
    now: datetime,
    policy: RetrainingPolicy | None = None,
) -> RetrainingDecision:
    """Which failure, if any, a retraining run should be launched for now, and why (or why not).

    ``answered_by`` maps a failure's key to the runs tagged with it; ``runs`` are the retraining
    runs launched recently (at least: today's, those within the cooldown, the active ones and the
    latest one). ``now`` must be timezone-aware.
    """
    policy = policy or RetrainingPolicy()
    if not failures:
        return RetrainingDecision(None, "no failed evaluation of the watched checks to answer")
    latest = max(runs, key=lambda r: r.launched_at, default=None)
    answered, open_failures = [], []
    for failure in sorted(failures, key=lambda f: (f.evaluated_at, f.evaluation_id), reverse=True):
        why = _answered(failure, answered_by.get(failure.key, ()), latest)
        if why is None:
            open_failures.append(failure)
        else:
            answered.append(why)
    if not open_failures:
        return RetrainingDecision(None, f"nothing to answer: {_listed(answered)}")

    newest, older = open_failures[0], len(open_failures) - 1
    subject = f"{newest.label()} is open" + (f" (with {older} older open failure(s))" if older else "")
    held, allowed = [], [now]
    active = [r for r in runs if r.active]
    if active:
        held.append(f"retraining {active[0].label()} is still in progress")
    if latest is not None and now < latest.launched_at + timedelta(hours=policy.cooldown_hours):
        ends = latest.launched_at + timedelta(hours=policy.cooldown_hours)
        held.append(f"the cooldown of {policy.cooldown_hours:g} h after retraining {latest.label()} lasts until {when(ends)}")
        allowed.append(ends)
    today = utc_day_start(now)
    used = sum(1 for r in runs if r.automatic and r.launched_at >= today)
    if used >= policy.daily_budget_runs:
        held.append(f"the daily budget is used: {used} of {policy.daily_budget_runs} automatic retraining run(s) "
                    f"launched on {today:%Y-%m-%d} (UTC)")
        allowed.append(today + timedelta(days=1))
    if held:
        if policy.daily_budget_runs == 0:
            next_text, next_at = "never while daily_budget_runs is 0", None
        else:
            next_at = max(allowed)
            next_text = when(next_at) + (" or when that run ends, whichever is later" if active else "")
        reason = f"{subject}, but {' and '.join(held)}; next retraining allowed at {next_text}"
        return RetrainingDecision(None, reason, tuple(open_failures), next_at)
    also = f"; it also covers {older} older open failure(s)" if older else ""
    return RetrainingDecision(newest, f"retraining for {newest.label()}{also}", tuple(open_failures), now)
