"""The fast path: equal to the registered pyfunc on the real test split (training–serving skew).

"Equal" is the skew contract of ``scoring/verification.py``: every row within its float32 error bound
(``scoring/error_bound.py``), never a fixed relative tolerance (which depends on the CPU's last digits).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing_platform.core import features
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import SkewCheck, check_skew

pytestmark = pytest.mark.slow


def assert_within_bound(check: SkewCheck) -> None:
    assert check.passed, check.describe()


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fast_path_equals_registered_pyfunc_on_the_whole_test_split(models, champion_pyfunc, precision):
    """The training–serving skew test: every row of the real test split within its float32 error bound."""
    test = models.test
    assert len(test) > 4_000  # the whole split of the 20,640-row dataset, not a sample
    expected = np.asarray(champion_pyfunc.predict(test[list(FEATURE_COLUMNS)]), dtype=np.float64)
    scorer = FastScorer.from_python_model(champion_pyfunc.unwrap_python_model(), precision=precision)

    actual = scorer.score(test)

    check = check_skew(scorer, test, actual, expected)
    assert_within_bound(check)
    # The same through the column-mapping input the server uses, and chunked + threaded as in batch.
    columns = {name: test[name].to_numpy() for name in FEATURE_COLUMNS}
    assert_within_bound(check_skew(scorer, test, scorer.score(columns), expected))
    big = pd.concat([test] * 5, ignore_index=True)
    threaded = scorer.score_arrays(scorer.numeric_matrix(big), scorer.category_codes(big[CATEGORICAL_COLUMN]), threads=2)
    assert_within_bound(check_skew(scorer, big, threaded, np.tile(expected, 5)))
    # The figures behind the contract (pytest -s shows them): how large the bound is, how far inside it we are.
    positive = expected > 0
    relative = check.bounds[positive] / expected[positive]
    print(
        f"\n[{precision}] skew bound on {check.rows:,} test rows: median ${np.median(check.bounds):.2f}, "
        f"max ${check.bounds.max():.2f}; relative median {np.median(relative):.2e}, max {relative.max():.2e}. "
        f"Deviation from the pyfunc: max ${check.deviations.max():.4f}, largest deviation/bound {check.worst_ratio:.2e}"
    )


def test_fast_transform_equals_the_fitted_sklearn_transformer(models, champion_pyfunc):
    transformer = champion_pyfunc.unwrap_python_model().transformer
    scorer = FastScorer.from_python_model(champion_pyfunc.unwrap_python_model())
    frame = models.test.copy()
    frame.loc[::7, "total_bedrooms"] = np.nan  # imputation path

    expected = np.asarray(transformer.transform(frame[list(FEATURE_COLUMNS)]), dtype=np.float64)

    np.testing.assert_allclose(scorer.transform(frame), expected, rtol=1e-9, atol=1e-9)
    assert scorer.n_features == len(features.feature_names(transformer))


@pytest.mark.parametrize("kernel", ["biweight", "gaussian"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_both_cluster_kernels_are_ported(models, kernel, precision):
    """The default biweight kernel and the Gaussian one (older versions) score like sklearn + Keras."""
    import keras

    from housing_platform.core import model as keras_model

    transformer = features.fit_transformer(models.train, n_clusters=12, gamma=30.0, n_init=1, kernel=kernel)
    n_features = len(features.feature_names(transformer))
    config = keras_model.TrainingConfig(hidden_units=(16, 8))
    keras.utils.set_random_seed(7)
    network = keras_model._with_inverse_target(
        keras_model.build_network(n_features, config), n_features, config, 200_000.0, 100_000.0
    )
    scorer = FastScorer.from_objects(transformer, network, precision=precision)
    test = models.test
    expected = keras_model.predict(network, features.transform(transformer, test), config)

    assert scorer.cluster_kernel == kernel
    np.testing.assert_allclose(scorer.transform(test), transformer.transform(test[list(FEATURE_COLUMNS)]),
                               rtol=1e-9, atol=1e-12)
    threaded = scorer.score_arrays(scorer.numeric_matrix(test), scorer.category_codes(test[CATEGORICAL_COLUMN]),
                                   threads=2)
    # An untrained network predicts some rows near $0, where Keras's float32 output is quantised at
    # ~$0.03 (the $200k offset of the inverse target transform): the per-row bound accounts for it.
    assert_within_bound(check_skew(scorer, test, threaded, expected))


def test_missing_bedrooms_and_unknown_category_score_like_the_pyfunc(models, champion_pyfunc):
    frame = models.test.head(50)[list(FEATURE_COLUMNS)].copy()
    frame.loc[frame.index[:10], "total_bedrooms"] = np.nan
    frame.loc[frame.index[10:20], CATEGORICAL_COLUMN] = "MARS"  # one-hot all zeros, as OneHotEncoder(ignore)
    scorer = FastScorer.from_python_model(champion_pyfunc.unwrap_python_model())

    assert_within_bound(check_skew(scorer, frame, scorer.score(frame), champion_pyfunc.predict(frame)))


@pytest.mark.parametrize(("target_transform", "clip_predictions"), [("log", True), ("scale", True), ("none", False)])
def test_every_target_transform_of_the_training_code_is_ported(models, champion_pyfunc, target_transform,
                                                              clip_predictions):
    """Whatever `model.train_model` puts after the network (Rescaling, exp, clip), the port follows."""
    from housing_platform.core import model as keras_model
    from housing_platform.core.schema import TARGET_COLUMN

    transformer = champion_pyfunc.unwrap_python_model().transformer
    train, test = models.train.head(600), models.test.head(300)
    config = keras_model.TrainingConfig(hidden_units=(32, 16), epochs=1, patience=1, reduce_lr_patience=0,
                                        target_transform=target_transform, clip_predictions=clip_predictions)
    result = keras_model.train_model(
        features.transform(transformer, train), train[TARGET_COLUMN].to_numpy(),
        features.transform(transformer, test), test[TARGET_COLUMN].to_numpy(), config,
    )
    expected = keras_model.predict(result.model, features.transform(transformer, test), config)

    scorer = FastScorer.from_objects(transformer, result.model)

    assert_within_bound(check_skew(scorer, test, scorer.score(test), expected))
