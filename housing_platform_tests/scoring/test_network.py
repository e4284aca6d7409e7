"""The numpy port of the Keras network: what core/model.py builds matches Keras, anything else is refused."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from housing_platform.core.model import TrainingConfig
from housing_platform.scoring.errors import UnsupportedModelError
from housing_platform.scoring.network import dense_layers_from_keras

MODEL_ACTIVATIONS = typing.get_args(TrainingConfig.model_fields["activation"].annotation)


@pytest.mark.parametrize("activation", MODEL_ACTIVATIONS)
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

    layers = dense_layers_from_keras(network)
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
    layers = dense_layers_from_keras(network)
    np.testing.assert_allclose(layers[0](x.astype(np.float64)), np.asarray(network(x)), rtol=1e-5, atol=1e-6)


def test_a_layer_without_numpy_port_is_refused_not_skipped():
    import keras

    network = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4), keras.layers.LayerNormalization(),
                                keras.layers.Dense(1)])
    with pytest.raises(UnsupportedModelError, match="LayerNormalization"):
        dense_layers_from_keras(network)


@pytest.mark.parametrize("layer", ["BatchNormalization", "GaussianNoise"])
def test_layers_the_model_never_builds_are_refused(layer):
    import keras

    extra = keras.layers.BatchNormalization() if layer == "BatchNormalization" else keras.layers.GaussianNoise(0.1)
    network = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4), extra, keras.layers.Dense(1)])
    with pytest.raises(UnsupportedModelError, match=layer):
        dense_layers_from_keras(network)


@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])
def test_activations_the_model_never_builds_are_refused_by_name(activation):
    import keras

    network = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4, activation=activation),
                                keras.layers.Dense(1)])
    with pytest.raises(UnsupportedModelError, match=f"activation '{activation}'"):
        dense_layers_from_keras(network)
