"""`housing-platform labels list|approve|reject`, run as a user runs it, on a capture store with held batches."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from housing_platform.adapters.capture.label_reviews import ADMITTED, APPROVED, HELD, REJECTED, LabelReviews, NewBatch
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.cli.labels import EXIT_NOT_FOUND, EXIT_OK, EXIT_REFUSED
from housing_platform.config.settings import HousingSettings

SCRIPT = shutil.which("housing-platform", path=str(Path(sys.executable).parent))


@pytest.fixture
def held_batches(housing_settings: HousingSettings) -> tuple[HousingSettings, list[int]]:
    """Two held batches and one admitted one in the state folder's capture store."""
    store = CaptureStore(housing_settings.capture_url)
    try:
        reviews = LabelReviews(store)
        held = reviews.record(
            [NewBatch("consistency", "unattributed", "ocean_proximity=INLAND: 1,500 labels, median 1.50×", ["a", "b"]),
             NewBatch("volume", "tok_1", "source tok_1 sent 12,000 labels on 2026-11-30", ["c"])],
            status=HELD, run_id="run-1",
        )
        reviews.record([NewBatch("admitted", "unattributed", "passed the label gate", ["d"])], status=ADMITTED,
                       decided_by="labelled_traffic")
    finally:
        store.dispose()
    return housing_settings, held


def run_cli(*args: str) -> subprocess.CompletedProcess:
    assert SCRIPT, "the housing-platform console script is not installed in this environment"
    return subprocess.run([SCRIPT, "labels", *args], capture_output=True, text=True, timeout=120)


def batch(settings: HousingSettings, batch_id: int) -> dict:
    store = CaptureStore(settings.capture_url)
    try:
        return LabelReviews(store).batch(batch_id)
    finally:
        store.dispose()


def test_list_shows_held_batches_with_rule_source_and_reason(held_batches) -> None:
    _, (first, second) = held_batches
    listed = run_cli("list")
    assert listed.returncode == EXIT_OK, listed.stderr
    assert "ocean_proximity=INLAND: 1,500 labels" in listed.stdout and "tok_1" in listed.stdout
    assert "passed the label gate" not in listed.stdout  # admitted batches only with --all
    assert "passed the label gate" in run_cli("list", "--all").stdout


def test_approve_and_reject_record_who_when_and_why(held_batches) -> None:
    settings, (first, second) = held_batches
    approved = run_cli("approve", "--batch", str(first), "--reason", "prices really rose", "--by", "ana")
    assert approved.returncode == EXIT_OK, approved.stderr
    assert "approved by ana" in approved.stdout
    recorded = batch(settings, first)
    assert (recorded["status"], recorded["decided_by"], recorded["decision_reason"]) == (APPROVED, "ana", "prices really rose")
    assert recorded["decided_at"] is not None

    rejected = run_cli("reject", "--batch", str(second), "--reason", "flood from one token", "--by", "bo")
    assert rejected.returncode == EXIT_OK and batch(settings, second)["status"] == REJECTED
    assert "no label batches held" in run_cli("list").stdout


def test_a_decided_batch_cannot_be_decided_again_and_an_unknown_one_is_named(held_batches) -> None:
    settings, (first, _) = held_batches
    assert run_cli("reject", "--batch", str(first), "--reason", "no", "--by", "bo").returncode == EXIT_OK
    again = run_cli("approve", "--batch", str(first), "--reason", "changed my mind", "--by", "bo")
    assert again.returncode == EXIT_REFUSED and "is rejected (by bo" in again.stderr
    assert batch(settings, first)["status"] == REJECTED
    missing = run_cli("approve", "--batch", "999", "--reason", "x")
    assert missing.returncode == EXIT_NOT_FOUND and "no label batch 999" in missing.stderr


def test_a_decision_needs_a_reason() -> None:
    completed = run_cli("approve", "--batch", "1")
    assert completed.returncode == 2 and "--reason" in completed.stderr
