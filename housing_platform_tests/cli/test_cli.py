"""`housing-platform validate` exit codes and messages, run as a user runs it (the console script)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from housing_platform.cli.main import EXIT_GATE_FAILED, EXIT_OK, EXIT_UNREADABLE, main

SCRIPT = shutil.which("housing-platform", path=str(Path(sys.executable).parent))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    assert SCRIPT, "the housing-platform console script is not installed in this environment"
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_real_dataset_passes(real_data_path: Path) -> None:
    completed = run_cli("validate", str(real_data_path))
    assert completed.returncode == EXIT_OK, completed.stdout + completed.stderr
    assert "PASSED the data gate" in completed.stdout
    assert "households <= population" in completed.stdout  # the 3 quarantined rows are reported


def write_csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "input.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("break_it", "column", "rule"),
    [
        (lambda d: d.drop(columns=["ocean_proximity"]), "ocean_proximity", "required column"),
        (lambda d: d.assign(population=["many"] * len(d)), "population", "type float64"),
        (lambda d: d.assign(median_income=99.0), "median_income", "< 16"),
        (lambda d: d.assign(latitude=50.0), "latitude", "<= 42.1"),
        (lambda d: d.assign(ocean_proximity="ON THE MOON"), "ocean_proximity", "one of"),
    ],
    ids=["missing-column", "wrong-type", "out-of-range", "outside-california", "unknown-category"],
)
def test_bad_files_exit_1_naming_column_and_rule(tmp_path, break_it, column, rule, real_data_path) -> None:
    frame = pd.read_csv(real_data_path, nrows=1_500)
    completed = run_cli("validate", str(write_csv(tmp_path, break_it(frame))))
    assert completed.returncode == EXIT_GATE_FAILED, completed.stdout + completed.stderr
    assert column in completed.stdout and rule in completed.stdout
    assert "Traceback" not in completed.stdout + completed.stderr


def test_a_few_bad_rows_are_reported_with_examples(tmp_path: Path, real_data_path: Path, capsys) -> None:
    frame = pd.read_csv(real_data_path, nrows=1_500)
    frame.loc[[10, 20], "ocean_proximity"] = ["ATLANTIS", "MARS"]
    assert main(["validate", str(write_csv(tmp_path, frame))]) == EXIT_OK  # 2 rows of 1,500 < 1%
    out = capsys.readouterr().out
    assert "'ATLANTIS', 'MARS'" in out and "ocean_proximity" in out


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00\x00garbage"])
def test_unreadable_file_exits_2_without_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    completed = run_cli("validate", str(path))
    assert completed.returncode == EXIT_UNREADABLE
    assert "cannot read" in completed.stderr and "Traceback" not in completed.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "nope.csv")]) == EXIT_UNREADABLE
