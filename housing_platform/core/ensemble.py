"""An ensemble of small networks trained side by side, served as ONE Keras ``Sequential`` of Dense layers.

``TrainingConfig.ensemble_size`` = M > 1 networks of the same shape (``hidden_units``), each with its own
initial weights and dropout masks, are trained in one Keras functional model: one input, M branches,
the M outputs concatenated, and the loss the mean of the M members' MSEs — so each member's gradient
is its own MSE's (scaled by 1/M), the members are independent networks that only share the batches,
the learning-rate schedule and the early-stopping epoch.

Their average is *exactly* a plain ``Sequential`` of wider Dense layers, which is what gets saved:

    hidden_0   kernel [W0_1 | W0_2 | ... | W0_M]          (n_features × M·u0), bias [b0_1, ..., b0_M]
    hidden_i   block-diagonal diag(Wi_1, ..., Wi_M)        (M·u(i-1) × M·ui),   bias [bi_1, ..., bi_M]
    output     [Wo_1; Wo_2; ...; Wo_M] / M                 (M·u_last × 1),      bias mean(bo_m)

(the activation acts element-wise, so concatenating the members' hidden units and zeroing the
cross-member weights computes every member at once; the output layer's ``1/M`` is the average). The
registered model therefore has the same layer types as a single network, and the numpy fast path
(``scoring/network.py``), its error bound and the skew contract need nothing new.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from housing_platform.core.model import TrainingConfig


def build_members(n_features: int, config: TrainingConfig) -> keras.Model:
    """The trainable ensemble: features → (n, M), one column per member (transformed target)."""
    import keras

    initializer = "lecun_normal" if config.activation == "selu" else "he_normal"
    features = keras.Input(shape=(n_features,), name="features")
    outputs = []
    for m in range(config.ensemble_size):
        x = features
        for i, units in enumerate(config.hidden_units):
            x = keras.layers.Dense(units, activation=config.activation, kernel_initializer=initializer,
                                   name=f"member_{m}_hidden_{i}")(x)
            if config.dropout > 0:
                x = keras.layers.Dropout(config.dropout, name=f"member_{m}_dropout_{i}")(x)
        outputs.append(keras.layers.Dense(1, name=f"member_{m}_output")(x))
    return keras.Model(features, keras.layers.Concatenate(name="members")(outputs), name="house_price_ensemble")


def averaging_layer(ensemble_size: int) -> keras.layers.Layer:
    """A fixed Dense(1) that averages the members' columns (used while training, for the dollars RMSE)."""
    import keras

    return keras.layers.Dense(1, use_bias=False, trainable=False, name="members_average",
                              kernel_initializer=keras.initializers.Constant(1.0 / ensemble_size))


def merged_weights(members: keras.Model, config: TrainingConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) per Dense layer of the merged network (see the module docstring), float32."""
    m_count = config.ensemble_size
    depth = len(config.hidden_units)
    weights = {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in members.layers}
    merged = []
    for i in range(depth + 1):
        names = [f"member_{m}_hidden_{i}" if i < depth else f"member_{m}_output" for m in range(m_count)]
        kernels = [weights[name][0] for name in names]
        biases = [weights[name][1] for name in names]
        if i == 0:
            kernel = np.concatenate(kernels, axis=1)
        else:
            rows, cols = kernels[0].shape
            kernel = np.zeros((rows * m_count, cols * m_count), dtype=kernels[0].dtype)
            for m, block in enumerate(kernels):
                kernel[m * rows:(m + 1) * rows, m * cols:(m + 1) * cols] = block
        bias = np.concatenate(biases)
        if i == depth:  # the output: the members' average
            kernel, bias = kernel.sum(axis=1, keepdims=True) / m_count, bias.mean(keepdims=True)
        merged.append((kernel.astype(np.float32), bias.astype(np.float32)))
    return merged


def merged_layers(members: keras.Model, n_features: int, config: TrainingConfig) -> list[keras.layers.Layer]:
    """Plain Dense layers (built, weights set) that compute the members' average; see the module docstring."""
    import keras

    layers = []
    width = n_features
    weights = merged_weights(members, config)
    for i, (kernel, bias) in enumerate(weights):
        last = i == len(weights) - 1
        layer = keras.layers.Dense(kernel.shape[1], activation=None if last else config.activation,
                                   name="output" if last else f"hidden_{i}")
        layer.build((None, width))
        layer.set_weights([kernel, bias])
        layers.append(layer)
        width = kernel.shape[1]
    return layers
