"""The textbook baseline: the book's pipeline, its fit rows, and its determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_platform.core.baselines import (
    TEXTBOOK_GAMMA,
    TEXTBOOK_MAX_FEATURES,
    TEXTBOOK_N_CLUSTERS,
    TEXTBOOK_N_ESTIMATORS,
    textbook_pipeline,
    textbook_predictions,
)
from housing_platform.core.evaluation import baseline_predictions
from housing_platform.core.features import fit_transformer
from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform_tests.factories import make_districts


def test_textbook_pipeline_is_the_books_configuration():
    pipeline = textbook_pipeline()
    forest = pipeline["random_forest"]
    assert (forest.n_estimators, forest.max_features) == (TEXTBOOK_N_ESTIMATORS, TEXTBOOK_MAX_FEATURES) == (100, 9)
    geo = pipeline["preprocessing"].transformers[4][1]
    assert (geo.n_clusters, geo.gamma) == (TEXTBOOK_N_CLUSTERS, TEXTBOOK_GAMMA) == (45, 1.0)
    districts = make_districts(300)
    fitted = pipeline.fit(districts[list(FEATURE_COLUMNS)], districts[TARGET_COLUMN])
    classes = districts["ocean_proximity"].nunique()  # the book's encoder learns the classes it is fit on
    # 3 ratios + 5 logs + 45 similarities + one-hot ocean classes + housing_median_age (the remainder).
    assert fitted["preprocessing"].transform(make_districts(5)[list(FEATURE_COLUMNS)]).shape == (5, 54 + classes)


def test_textbook_baseline_learns_from_train_and_validation_and_is_seeded():
    frame = make_districts(400)
    train, validation, test = frame.iloc[:250], frame.iloc[250:320], frame.iloc[320:].reset_index(drop=True)
    transformer = fit_transformer(train, n_clusters=5, gamma=2.0, n_init=1)
    both = baseline_predictions(train, test, transformer, validation)["textbook_random_forest"]
    expected = textbook_predictions(pd.concat([train, validation], ignore_index=True), test)
    np.testing.assert_array_equal(both, expected)  # same rows, same seeds: bit-identical trees
    assert not np.array_equal(both, textbook_predictions(train, test))  # the validation rows were used


def test_the_same_rows_are_fit_once_per_process_and_other_rows_refit(monkeypatch):
    from housing_platform.core import baselines

    frame = make_districts(300, seed=4)
    learn, test = frame.iloc[:200], frame.iloc[200:]
    fits = []
    original = baselines.textbook_pipeline
    monkeypatch.setattr(baselines, "textbook_pipeline", lambda: fits.append(1) or original())
    first = textbook_predictions(learn, test)
    np.testing.assert_array_equal(textbook_predictions(learn.copy(), test.copy()), first)
    assert len(fits) == 1  # same content: memoised
    changed = learn.copy()
    changed.loc[changed.index[0], TARGET_COLUMN] += 1.0
    textbook_predictions(changed, test)
    assert len(fits) == 2  # one label changed: fit again
