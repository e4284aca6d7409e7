"""Batch scoring: rejected rows stay unscored with their rules, parts on threads equal one part, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS
from housing_platform.scoring import batch
from housing_platform.scoring.batch import (
    BATCH_PRECISION,
    LOWER_COLUMN,
    MODEL_VERSION_COLUMN,
    OUT_OF_RANGE_COLUMN,
    PREDICTION_COLUMN,
    REJECTED_COLUMN,
    UPPER_COLUMN,
    score_frame,
)

pytestmark = pytest.mark.slow


def test_score_frame_keeps_rejected_rows_unscored_with_their_rules(models):
    scorer = models.scorer(models.versions[0])
    frame = models.test.head(10).copy()
    frame.loc[3, "total_rooms"] = -5.0
    frame.loc[4, CATEGORICAL_COLUMN] = "MARS"
    frame.loc[5, "total_rooms"] = 10_000_000.0  # valid, but far beyond the training range

    columns_before = list(frame.columns)
    scored = score_frame(scorer, frame, "1")
    assert list(frame.columns) == columns_before  # the caller's frame gains no columns

    assert scored[MODEL_VERSION_COLUMN].eq("1").all()
    assert np.isnan(scored.loc[[3, 4], PREDICTION_COLUMN]).all()
    assert "total_rooms > 0" in scored.loc[3, REJECTED_COLUMN]
    assert "ocean_proximity one of" in scored.loc[4, REJECTED_COLUMN]
    valid = scored.drop(index=[3, 4])
    np.testing.assert_allclose(valid[PREDICTION_COLUMN], scorer.score(frame.drop(index=[3, 4])), rtol=1e-12)
    assert "total_rooms" in scored.loc[5, OUT_OF_RANGE_COLUMN].split(",")
    assert (valid.drop(index=5)[REJECTED_COLUMN] == "").all()


def test_score_frame_returns_the_versions_interval_around_each_scored_row(models):
    from housing_platform.core.conformal import intervals

    python_model = models.load_pyfunc(models.versions[0]).unwrap_python_model()
    frame = models.test.head(50).copy()
    frame.loc[7, "total_rooms"] = -5.0  # rejected: no prediction, no interval
    scored = score_frame(models.scorer(models.versions[0]), frame, "1")
    assert np.isnan(scored.loc[7, [LOWER_COLUMN, UPPER_COLUMN]].to_numpy(dtype=float)).all()
    valid = scored.drop(index=7)
    # The interval is a function of the prediction and the version's calibration, shipped with the version.
    lower, upper = intervals(valid[PREDICTION_COLUMN], python_model.intervals)
    np.testing.assert_array_equal(valid[LOWER_COLUMN], lower)
    np.testing.assert_array_equal(valid[UPPER_COLUMN], upper)
    assert (valid[LOWER_COLUMN] < valid[PREDICTION_COLUMN]).all() and (valid[PREDICTION_COLUMN] < valid[UPPER_COLUMN]).all()
    assert python_model.intervals["level"] == 0.8


def test_score_frame_in_parts_on_threads_equals_one_part(models, monkeypatch):
    """Rules, scores, flags and rejections land on the right rows whichever thread scored their part."""
    scorer = models.scorer(models.versions[0]).with_precision(BATCH_PRECISION)
    frame = pd.concat([models.test] * 2, ignore_index=True)[list(FEATURE_COLUMNS)]
    broken = [5, 1_234, 4_500, 8_000]  # in different parts
    frame.loc[broken[0], "total_rooms"] = -5.0
    frame.loc[broken[1], CATEGORICAL_COLUMN] = "MARS"
    frame.loc[broken[2], "latitude"] = np.nan
    frame.loc[broken[3], "households"] = frame.loc[broken[3], "population"] * 2
    frame.loc[3_333, "median_income"] = 15.9  # valid, beyond the training range

    whole = score_frame(scorer, frame, "1", threads=1)
    monkeypatch.setattr(batch, "BATCH_PART_ROWS", 1_000)
    parts = score_frame(scorer, frame, "1", threads=2)

    pd.testing.assert_frame_equal(parts, whole)
    assert np.flatnonzero(np.isnan(parts[PREDICTION_COLUMN].to_numpy())).tolist() == broken
    assert (parts.loc[broken, REJECTED_COLUMN] != "").all()
    assert "median_income" in parts.loc[3_333, OUT_OF_RANGE_COLUMN]
    # float32 matrix products round a little differently for differently shaped blocks: 1e-6, not 1e-12.
    np.testing.assert_allclose(parts[PREDICTION_COLUMN].drop(index=broken),
                               scorer.score(frame.drop(index=broken)), rtol=1e-6)


# -- housing-platform score --------------------------------------------------------------------


@pytest.fixture
def registry_env(models, monkeypatch, tmp_path):
    for key, value in models.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "state"))
    return models


def test_cli_score_writes_every_row_with_prediction_and_model_version(registry_env, tmp_path, capsys):
    from housing_platform.cli.main import main

    source = tmp_path / "districts.csv"
    frame = registry_env.test.head(200).copy()
    frame.loc[0, "households"] = frame.loc[0, "population"] + 1  # breaks a cross-column rule
    frame.to_csv(source, index=False)
    output = tmp_path / "out" / "scored.parquet"

    assert main(["score", str(source), str(output)]) == 0

    scored = pd.read_parquet(output)
    assert len(scored) == 200
    assert (scored["model_version"] == registry_env.registry().champion().version).all()
    assert np.isnan(scored.loc[0, "prediction"]) and "households <= population" in scored.loc[0, "rejected_rules"]
    assert scored["prediction"].iloc[1:].between(1_000, 600_000).all()
    assert "199 predicted, 1 rejected" in capsys.readouterr().out


def test_cli_score_exit_codes_for_unreadable_input_and_missing_alias(registry_env, tmp_path, capsys):
    from housing_platform.cli.main import main

    assert main(["score", str(tmp_path / "nope.csv"), str(tmp_path / "out.parquet")]) == 2
    assert "no such file" in capsys.readouterr().err
    source = tmp_path / "districts.csv"
    registry_env.test.head(5).to_csv(source, index=False)
    assert main(["score", str(source), str(tmp_path / "out.parquet"),
                 "--model-uri", "models:/housing_price_model@nobody"]) == 1
    assert "alias 'nobody'" in capsys.readouterr().err
