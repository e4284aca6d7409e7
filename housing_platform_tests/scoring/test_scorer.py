"""The fast scoring path: equal to the registered pyfunc (training–serving skew), rules equal to pandera."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing_platform.core import features
from housing_platform.scoring import scorer as scoring
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_FEATURE_COLUMNS
from housing_platform.devtools.tiny_models import RegisteredModels, registered_models

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> RegisteredModels:
    return registered_models(tmp_path_factory)


@pytest.fixture(scope="module")
def champion_pyfunc(models: RegisteredModels):
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{models.model_name}/{models.versions[0]}")


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fast_path_equals_registered_pyfunc_on_the_whole_test_split(models, champion_pyfunc, precision):
    """The training–serving skew test: every row of the real test split, 1e-5 relative."""
    test = models.test
    assert len(test) > 4_000  # the whole split of the 20,640-row dataset, not a sample
    expected = np.asarray(champion_pyfunc.predict(test[list(FEATURE_COLUMNS)]), dtype=np.float64)
    scorer = scoring.FastScorer.from_python_model(champion_pyfunc.unwrap_python_model(), precision=precision)

    actual = scorer.score(test)

    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=scoring.SKEW_RTOL, atol=0)
    # The same through the column-mapping input the server uses, and chunked + threaded as in batch.
    columns = {name: test[name].to_numpy() for name in FEATURE_COLUMNS}
    np.testing.assert_allclose(scorer.score(columns), expected, rtol=scoring.SKEW_RTOL, atol=0)
    big = pd.concat([test] * 5, ignore_index=True)
    threaded = scorer.score_arrays(scorer.numeric_matrix(big), scorer.category_codes(big[CATEGORICAL_COLUMN]), threads=2)
    np.testing.assert_allclose(threaded, np.tile(expected, 5), rtol=scoring.SKEW_RTOL, atol=0)


def test_fast_transform_equals_the_fitted_sklearn_transformer(models, champion_pyfunc):
    transformer = champion_pyfunc.unwrap_python_model().transformer
    scorer = scoring.FastScorer.from_python_model(champion_pyfunc.unwrap_python_model())
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
    scorer = scoring.FastScorer.from_objects(transformer, network, precision=precision)
    test = models.test
    expected = keras_model.predict(network, features.transform(transformer, test), config)

    assert scorer.cluster_kernel == kernel
    np.testing.assert_allclose(scorer.transform(test), transformer.transform(test[list(FEATURE_COLUMNS)]),
                               rtol=1e-9, atol=1e-12)
    threaded = scorer.score_arrays(scorer.numeric_matrix(test), scorer.category_codes(test[CATEGORICAL_COLUMN]),
                                   threads=2)
    # An untrained network predicts some rows near $0, where Keras's float32 output is quantised at
    # ~$0.03 (the $200k offset of the inverse target transform): hence the small absolute tolerance.
    np.testing.assert_allclose(threaded, expected, rtol=scoring.SKEW_RTOL, atol=1e-6 * np.abs(expected).max())


def test_missing_bedrooms_and_unknown_category_score_like_the_pyfunc(models, champion_pyfunc):
    frame = models.test.head(50)[list(FEATURE_COLUMNS)].copy()
    frame.loc[frame.index[:10], "total_bedrooms"] = np.nan
    frame.loc[frame.index[10:20], CATEGORICAL_COLUMN] = "MARS"  # one-hot all zeros, as OneHotEncoder(ignore)
    scorer = scoring.FastScorer.from_python_model(champion_pyfunc.unwrap_python_model())

    np.testing.assert_allclose(scorer.score(frame), champion_pyfunc.predict(frame), rtol=scoring.SKEW_RTOL)


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

    scorer = scoring.FastScorer.from_objects(transformer, result.model)

    np.testing.assert_allclose(scorer.score(test), expected, rtol=scoring.SKEW_RTOL, atol=1e-6 * np.abs(expected).max())


def test_every_version_loads_verified_and_differs(models):
    one, two = (models.scorer(v) for v in models.versions)
    rows = models.test.head(20)
    assert not np.allclose(one.score(rows), two.score(rows))


def test_verify_refuses_a_fast_path_that_disagrees_with_the_pyfunc(champion_pyfunc):
    python_model = champion_pyfunc.unwrap_python_model()
    scorer = scoring.FastScorer.from_python_model(python_model)
    last = scorer.layers[-1]
    tampered = scoring.FastScorer(
        **{
            **{f: getattr(scorer, f) for f in ("imputer_medians", "scaler_means", "scaler_scales",
                                               "cluster_centers", "cluster_gamma", "categories", "feature_ranges",
                                               "cluster_kernel")},
            "layers": [*scorer.layers[:-1], scoring.DenseLayer(last.kernel * 1.001, last.bias * 1.001, last.post)],
        }
    )

    assert scoring.verify_against(scorer, python_model) <= scoring.SKEW_RTOL
    with pytest.raises(scoring.SkewError, match="differs from the registered model"):
        scoring.verify_against(tampered, python_model)


@pytest.mark.parametrize("activation", ["relu", "elu", "selu", "gelu", "swish", "tanh", "sigmoid", "softplus"])
def test_dense_activations_match_keras(activation):
    import keras

    rng = np.random.default_rng(1)
    network = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            keras.layers.Dense(8, activation=activation),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(1),
            keras.layers.Rescaling(scale=0.5, offset=12.0),
            keras.layers.Activation("exponential"),
            keras.layers.ReLU(max_value=200_000.0),
        ]
    )
    x = rng.normal(size=(64, 6)).astype(np.float32)
    expected = np.asarray(network(x, training=False), dtype=np.float64)[:, 0]

    layers = scoring.dense_layers_from_keras(network)
    out = x.astype(np.float64)
    for layer in layers:
        out = layer(out)

    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-5)
    assert len(layers) == 2  # Dropout skipped, Rescaling folded into the output Dense
    assert (out[:, 0] <= 200_000.0).all()


def test_relu_layer_with_slope_and_threshold_matches_keras():
    import keras

    network = keras.Sequential(
        [keras.Input(shape=(3,)), keras.layers.Dense(4), keras.layers.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2)]
    )
    x = np.random.default_rng(2).normal(size=(100, 3)).astype(np.float32)
    layers = scoring.dense_layers_from_keras(network)
    np.testing.assert_allclose(layers[0](x.astype(np.float64)), np.asarray(network(x)), rtol=1e-5, atol=1e-6)


def test_a_layer_without_numpy_port_is_refused_not_skipped():
    import keras

    network = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4), keras.layers.LayerNormalization(),
                                keras.layers.Dense(1)])
    with pytest.raises(scoring.UnsupportedModelError, match="LayerNormalization"):
        scoring.dense_layers_from_keras(network)


# -- the rules ---------------------------------------------------------------------------------


def test_cross_column_rules_are_read_from_the_pandera_model():
    assert scoring.CROSS_RULES == (("total_bedrooms", "<=", "total_rooms"), ("households", "<=", "population"))


def _rule_breakers(base: pd.DataFrame) -> pd.DataFrame:
    """30 valid rows, then one row per rule of the schema, each breaking exactly that rule."""
    row = base.iloc[0]

    def broken(**changes) -> pd.Series:
        copy = row.copy()
        for key, value in changes.items():
            copy[key] = value
        return copy

    rows = []
    for name in NUMERIC_FEATURE_COLUMNS:
        rule = scoring.COLUMN_RULES[name]
        if rule.minimum is not None:
            rows.append(broken(**{name: rule.minimum if not rule.minimum_inclusive else rule.minimum - 1}))
        if rule.maximum is not None:
            rows.append(broken(**{name: rule.maximum if not rule.maximum_inclusive else rule.maximum + 1}))
        if not rule.nullable:
            rows.append(broken(**{name: np.nan}))
    rows.append(broken(**{CATEGORICAL_COLUMN: "MARS"}))
    rows.append(broken(total_bedrooms=row["total_rooms"] + 1))
    rows.append(broken(households=row["population"] + 1))
    return pd.concat([base.head(30), pd.DataFrame(rows)], ignore_index=True)


def test_check_rules_rejects_exactly_the_rows_pandera_quarantines(models):
    from housing_platform.core.validation import validate_housing_frame

    frame = _rule_breakers(models.test)
    outcome = validate_housing_frame(frame)
    numeric = frame[list(NUMERIC_FEATURE_COLUMNS)].to_numpy(dtype=np.float64)

    violations = scoring.check_rules(numeric, frame[CATEGORICAL_COLUMN].to_numpy(dtype=object))

    rejected = sorted({int(i) for v in violations for i in v.rows})
    assert rejected == list(range(30, len(frame)))  # every breaker, no valid row
    assert len(outcome.quarantine) == len(rejected)  # the training validator agrees row for row
    assert {v.rule for v in violations} >= {"> 0", "not null", "one of ['<1H OCEAN', 'INLAND', 'NEAR OCEAN', 'NEAR BAY', "
                                            "'ISLAND']", "total_bedrooms <= total_rooms", "households <= population"}


def test_values_on_and_next_to_every_bound_are_judged_like_pandera():
    """The one-pass pre-check (inclusive limits moved to the next float) decides exactly as the rules."""
    from housing_platform.core.schema import EXAMPLE_DISTRICT, HousingDistricts

    rows = []
    for name, rule in scoring.COLUMN_RULES.items():
        if name == CATEGORICAL_COLUMN:
            continue
        for bound in (rule.minimum, rule.maximum):
            if bound is not None:
                for value in (np.nextafter(bound, -np.inf), bound, np.nextafter(bound, np.inf)):
                    rows.append({**EXAMPLE_DISTRICT, name: float(value)})
        rows += [{**EXAMPLE_DISTRICT, name: v} for v in (np.inf, -np.inf, np.nan)]
    frame = pd.DataFrame(rows)
    frame["median_house_value"] = 200_000.0
    # Keep the cross-column rules out of the way (they are not what this test is about): no bedroom
    # count beside a tiny room count, households no more than population.
    small_rooms = frame["total_rooms"] < frame["total_bedrooms"]
    frame.loc[small_rooms, "total_bedrooms"] = np.nan
    frame["households"] = frame["households"].where(frame["households"] <= frame["population"], frame["population"])
    numeric = frame[list(NUMERIC_FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    categories = frame[CATEGORICAL_COLUMN].to_numpy(dtype=object)

    # One row at a time, as the server sees single-row requests: the pre-check alone decides then.
    rejected = [i for i in range(len(frame)) if scoring.check_rules(numeric[i : i + 1], categories[i : i + 1])]
    expected = []
    for i, row in frame.iterrows():
        try:
            HousingDistricts.validate(pd.DataFrame([row]))
        except Exception:  # noqa: BLE001 - pandera raises SchemaError(s); any failure means "rejected"
            expected.append(i)
        else:
            if np.isinf(numeric[i]).any():  # +inf where pandera has no upper bound: refused as "finite"
                expected.append(i)
    assert rejected == expected
    assert len(rejected) > len(frame) / 3  # the test really exercises failures (inf, NaN, beyond bounds)


def test_missing_bedrooms_pass_the_rules_and_cross_rule():
    numeric = np.array([[-122.2, 37.9, 41.0, 880.0, np.nan, 322.0, 126.0, 8.3]])
    assert scoring.check_rules(numeric, ["NEAR BAY"]) == []


def test_score_frame_keeps_rejected_rows_unscored_with_their_rules(models):
    scorer = models.scorer(models.versions[0])
    frame = models.test.head(10).copy()
    frame.loc[3, "total_rooms"] = -5.0
    frame.loc[4, CATEGORICAL_COLUMN] = "MARS"
    frame.loc[5, "total_rooms"] = 10_000_000.0  # valid, but far beyond the training range

    columns_before = list(frame.columns)
    scored = scoring.score_frame(scorer, frame, "1")
    assert list(frame.columns) == columns_before  # the caller's frame gains no columns

    assert scored[scoring.MODEL_VERSION_COLUMN].eq("1").all()
    assert np.isnan(scored.loc[[3, 4], scoring.PREDICTION_COLUMN]).all()
    assert "total_rooms > 0" in scored.loc[3, scoring.REJECTED_COLUMN]
    assert "ocean_proximity one of" in scored.loc[4, scoring.REJECTED_COLUMN]
    valid = scored.drop(index=[3, 4])
    np.testing.assert_allclose(valid[scoring.PREDICTION_COLUMN], scorer.score(frame.drop(index=[3, 4])), rtol=1e-12)
    assert "total_rooms" in scored.loc[5, scoring.OUT_OF_RANGE_COLUMN].split(",")
    assert (valid.drop(index=5)[scoring.REJECTED_COLUMN] == "").all()


def test_score_frame_in_parts_on_threads_equals_one_part(models, monkeypatch):
    """Rules, scores, flags and rejections land on the right rows whichever thread scored their part."""
    scorer = models.scorer(models.versions[0]).with_precision(scoring.BATCH_PRECISION)
    frame = pd.concat([models.test] * 2, ignore_index=True)[list(FEATURE_COLUMNS)]
    broken = [5, 1_234, 4_500, 8_000]  # in different parts
    frame.loc[broken[0], "total_rooms"] = -5.0
    frame.loc[broken[1], CATEGORICAL_COLUMN] = "MARS"
    frame.loc[broken[2], "latitude"] = np.nan
    frame.loc[broken[3], "households"] = frame.loc[broken[3], "population"] * 2
    frame.loc[3_333, "median_income"] = 15.9  # valid, beyond the training range

    whole = scoring.score_frame(scorer, frame, "1", threads=1)
    monkeypatch.setattr(scoring, "BATCH_PART_ROWS", 1_000)
    parts = scoring.score_frame(scorer, frame, "1", threads=2)

    pd.testing.assert_frame_equal(parts, whole)
    assert np.flatnonzero(np.isnan(parts[scoring.PREDICTION_COLUMN].to_numpy())).tolist() == broken
    assert (parts.loc[broken, scoring.REJECTED_COLUMN] != "").all()
    assert "median_income" in parts.loc[3_333, scoring.OUT_OF_RANGE_COLUMN]
    # float32 matrix products round a little differently for differently shaped blocks: 1e-6, not 1e-12.
    np.testing.assert_allclose(parts[scoring.PREDICTION_COLUMN].drop(index=broken),
                               scorer.score(frame.drop(index=broken)), rtol=1e-6)


def test_model_reference_parses_alias_and_version_uris():
    assert scoring.ModelReference.parse("models:/housing_price_model@champion") == scoring.ModelReference(
        "housing_price_model", alias="champion"
    )
    assert scoring.ModelReference.parse("models:/m/7").version == "7"
    with pytest.raises(scoring.ScoringError, match="models:/<name>@<alias>"):
        scoring.ModelReference.parse("runs:/abc/model")


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
