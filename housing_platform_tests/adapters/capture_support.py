"""Polling helper of the capture tests (records come from ``housing_platform.devtools.capture_samples``)."""

from __future__ import annotations

from housing_platform.devtools import processes
from housing_platform.devtools.processes import NotReady


def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 5 ms (the writer's batches are that quick); fail the test after ``timeout``."""

    def probe() -> None:
        if not predicate():
            raise NotReady(what)

    try:
        processes.wait_until(probe, what=what, timeout_seconds=timeout, interval_seconds=0.005)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None
