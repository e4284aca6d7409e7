"""The Keras network: determinism, early stopping, dollars out, .keras round trip (small configs)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from housing_platform.core.model import (
    SMALL_INPUT_ROWS,
    TrainingConfig,
    TrainingResult,
    build_network,
    load_model,
    predict,
    save_model,
    train_model,
)
from housing_platform.core.schema import MAX_HOUSE_VALUE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

TINY = TrainingConfig(
    hidden_units=(16, 8), epochs=8, learning_rate=0.01, batch_size=64, patience=3, reduce_lr_patience=2, seed=7,
    ensemble_size=3,
)
PROGRESS: list[str] = []


@pytest.fixture(scope="module")
def data():
    """A learnable problem: value depends on two of ten features, in a realistic dollar range."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1_200, 10)).astype(np.float32)
    y = 200_000 + 60_000 * X[:, 0] - 30_000 * X[:, 1] + rng.normal(0, 5_000, 1_200)
    y = np.clip(y, 20_000, 480_000)
    return X[:900], y[:900], X[900:], y[900:]


@pytest.fixture(scope="module")
def trained(data) -> TrainingResult:
    X_train, y_train, X_val, y_val = data
    PROGRESS.clear()
    return train_model(X_train, y_train, X_val, y_val, TINY, log=PROGRESS.append)


def weights_of(result: TrainingResult) -> list[np.ndarray]:
    return [np.asarray(w) for w in result.model.get_weights()]


def test_same_data_and_config_give_identical_weights_and_metrics(data, trained):
    again = train_model(*data, TINY)
    first, second = weights_of(trained), weights_of(again)
    assert len(first) == len(second) > 0
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(first, second)) <= 1e-6
    for key, values in trained.history.items():
        np.testing.assert_allclose(again.history[key], values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict(again.model, data[2]), predict(trained.model, data[2]), rtol=1e-6)


def test_another_seed_gives_other_weights(data, trained):
    other = train_model(*data, TINY.model_copy(update={"seed": 8}))
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(weights_of(trained), weights_of(other))) > 1e-3


def test_history_and_progress_log(trained):
    lines, result = PROGRESS, trained
    assert result.epochs_run == TINY.epochs
    assert {"loss", "val_loss", "val_rmse", "learning_rate"} <= set(result.history)
    assert all(len(v) == result.epochs_run for v in result.history.values())
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == TINY.epochs and "val RMSE $" in epoch_lines[0]


def test_early_stopping_restores_the_best_epoch(data):
    X_train, y_train, X_val, y_val = data
    # Pure-noise validation targets: validation loss stops improving almost at once.
    noise = np.random.default_rng(1).permutation(y_val)
    config = TINY.model_copy(update={"epochs": 40, "patience": 2, "learning_rate": 0.02, "reduce_lr_patience": 0})
    result = train_model(X_train, y_train, X_val, noise, config)
    assert result.epochs_run < config.epochs
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1
    assert result.epochs_run == result.best_epoch + config.patience
    # The returned weights are the best epoch's, not the last one's.
    rmse = float(np.sqrt(np.mean((predict(result.model, X_val) - noise) ** 2)))
    assert rmse == pytest.approx(result.history["val_rmse"][result.best_epoch - 1], rel=1e-4)


def test_scale_target_predicts_dollars(data, trained):
    predictions = predict(trained.model, data[2], TINY)
    assert predictions.shape == (len(data[2]),) and predictions.dtype == np.float64
    assert np.all((predictions >= 0) & (predictions <= MAX_HOUSE_VALUE))
    assert float(np.sqrt(np.mean((predictions - data[3]) ** 2))) < 0.5 * float(np.std(data[3]))


def test_log_target_predicts_dollars(data):
    config = TINY.model_copy(update={"target_transform": "log", "epochs": 12})
    result = train_model(*data, config)
    predictions = predict(result.model, data[2], config)
    assert [layer.__class__.__name__ for layer in result.model.layers][-3:] == ["Rescaling", "Activation", "ReLU"]
    assert result.target_offset == pytest.approx(np.log(data[1]).mean())
    assert float(np.sqrt(np.mean((predictions - data[3]) ** 2))) < 0.5 * float(np.std(data[3]))


def test_clip_keeps_predictions_in_the_survey_range(data):
    X_train, y_train, X_val, y_val = data
    result = train_model(X_train, y_train * 10, X_val, y_val * 10, TINY.model_copy(update={"epochs": 2}))
    predictions = predict(result.model, X_val)
    assert predictions.max() == MAX_HOUSE_VALUE  # the network wants ~2M; the last layer caps it
    assert result.model.layers[-1].max_value == MAX_HOUSE_VALUE


def test_keras_round_trip_gives_identical_predictions(trained, data, tmp_path):
    path = save_model(trained.model, tmp_path / "models" / "model.keras")
    loaded = load_model(path)
    X = data[2]
    np.testing.assert_array_equal(predict(loaded, X), predict(trained.model, X))
    assert [layer.__class__.__name__ for layer in loaded.layers][-2:] == ["Rescaling", "ReLU"]
    with pytest.raises(ValueError, match=".keras"):
        save_model(trained.model, tmp_path / "model.h5")


def test_small_and_large_inputs_agree(trained):
    X = np.random.default_rng(2).normal(size=(SMALL_INPUT_ROWS + 500, 10)).astype(np.float32)
    large = predict(trained.model, X)  # model.predict path
    small = np.concatenate([predict(trained.model, X[i : i + 500]) for i in range(0, len(X), 500)])
    np.testing.assert_allclose(large, small, rtol=1e-5)
    assert predict(trained.model, X[0]).shape == (1,)  # one row as a 1-D vector
    assert predict(trained.model, X[:0]).shape == (0,)


def test_an_ensemble_is_saved_as_one_sequential_that_averages_its_members(data):
    import keras

    from housing_platform.core import ensemble

    config = TINY.model_copy(update={"ensemble_size": 3, "dropout": 0.1})
    members = ensemble.build_members(10, config)  # untrained weights: the merge must be exact for any weights
    merged = keras.Sequential([keras.Input(shape=(10,)), *ensemble.merged_layers(members, 10, config)])
    X = data[2]
    expected = np.asarray(members(X, training=False), dtype=np.float64).mean(axis=1)
    # Both are float32 sums of at most 48 products in another order (block zeros add nothing): a few
    # float32 ulps (6e-8 relative) of outputs of magnitude ~1, far below 1e-5.
    np.testing.assert_allclose(np.asarray(merged(X), dtype=np.float64).reshape(-1), expected, rtol=0, atol=1e-5)
    assert [layer.kernel.shape for layer in merged.layers] == [(10, 48), (48, 24), (24, 1)]
    second = np.asarray(merged.layers[1].kernel)
    for a in range(3):
        for b in range(3):
            block = second[a * 16 : (a + 1) * 16, b * 8 : (b + 1) * 8]
            assert block.any() if a == b else not block.any()  # each member sees only its own hidden units


def test_a_trained_ensemble_has_the_layers_of_a_single_network(trained):
    assert trained.config.ensemble_size == 3
    kinds = [layer.__class__.__name__ for layer in trained.model.layers]
    assert kinds == ["Dense", "Dense", "Dense", "Rescaling", "ReLU"]
    assert [layer.units for layer in trained.model.layers[:3]] == [48, 24, 1]
    single = TINY.model_copy(update={"ensemble_size": 1})
    assert [layer.name for layer in build_network(10, single).layers] == [
        "hidden_0", "dropout_0", "hidden_1", "dropout_1", "output"]


def test_config_is_validated():
    with pytest.raises(ValidationError):
        TrainingConfig(ensemble_size=0)
    with pytest.raises(ValidationError):
        TrainingConfig(target_transform="sqrt")
    with pytest.raises(ValidationError):
        TrainingConfig(hidden_units=())
    with pytest.raises(ValidationError):
        TrainingConfig(unknown_field=1)
    assert TrainingConfig.model_validate(TrainingConfig().model_dump()) == TrainingConfig()


def test_mismatched_inputs_are_rejected(data):
    X_train, y_train, X_val, y_val = data
    with pytest.raises(ValueError):
        train_model(X_train, y_train[:-1], X_val, y_val, TINY)
    with pytest.raises(ValueError, match="positive"):
        train_model(X_train, y_train - 1e6, X_val, y_val, TINY.model_copy(update={"target_transform": "log"}))


def test_importing_the_module_does_not_import_tensorflow():
    code = "import sys, housing_platform.core.model; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert output.stdout.split() == ["False", "False"]
