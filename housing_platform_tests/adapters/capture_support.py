"""Polling helper of the capture tests (records come from ``housing_platform.devtools.capture_samples``)."""

from __future__ import annotations

import time

def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)
