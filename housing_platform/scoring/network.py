"""The Keras network of a model version as numpy: affine maps, each followed by element-wise steps.

:func:`dense_layers_from_keras` reads exactly the layers and activations that
:mod:`housing_platform.core.model` builds — ``Dense`` with one of ``TrainingConfig.activation`` (or
linear), ``Dropout`` (identity at inference), ``Rescaling``, ``Activation("exponential")`` and
``ReLU(max_value)`` — into :class:`DenseLayer` objects. Anything else raises
:class:`~housing_platform.scoring.errors.UnsupportedModelError` naming the layer or activation, so a
network the port does not understand fails at load time instead of being scored wrongly.

An ensemble (``TrainingConfig.ensemble_size`` > 1) is saved as the same kinds of layers — its members'
Dense layers merged side by side, block-diagonal, the output their average (``core/ensemble.py``) —
so it needs nothing here: the block zeros are multiplied like any weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from housing_platform.scoring.errors import UnsupportedModelError


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), in place."""
    # x * (x > 0) rather than np.maximum(x, 0): the same numbers (but -0.0), and 3x faster on AVX2
    # CPUs, where numpy's NaN-aware maximum is not vectorised.
    return np.multiply(x, x > 0, out=x)


# Keras activation name -> numpy function (Keras 3 defaults for every parameter). Each may work in place.
# These are the names Keras serialises for what core/model.py builds: TrainingConfig.activation
# ("swish" is serialised as "silu"), "linear" for the output layer, and "exponential" for the
# inverse of the log target transform. A new activation in TrainingConfig must be ported here.
ACTIVATIONS: dict[str, Any] = {
    "linear": lambda x: x,
    "relu": relu,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "tanh": lambda x: np.tanh(x, out=x),
    "silu": lambda x: x * _sigmoid(x),
    "exponential": lambda x: np.exp(x, out=x),
    "gelu": _gelu,
}


@dataclass(frozen=True)
class Elementwise:
    """One element-wise step after an affine map: a named activation, a Keras ``ReLU`` or ``Rescaling``."""

    kind: str  # an ACTIVATIONS name, "relu_layer" or "rescale"
    scale: float = 1.0  # rescale: x * scale + offset
    offset: float = 0.0
    max_value: float | None = None  # relu_layer: Keras ReLU(max_value, negative_slope, threshold)
    negative_slope: float = 0.0
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ACTIVATIONS and self.kind not in ("relu_layer", "rescale"):
            raise UnsupportedModelError(
                f"activation {self.kind!r} has no numpy implementation (known: {', '.join(sorted(ACTIVATIONS))})"
            )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "rescale":
            x *= self.scale
            x += self.offset
            return x
        if self.kind == "relu_layer":
            # keras.activations.relu: x >= max_value -> max_value; threshold <= x -> x; else slope*(x - threshold)
            below = x < self.threshold
            slope = self.negative_slope * (x - self.threshold) if self.negative_slope else 0.0
            out = np.where(below, slope, x)
            if self.max_value is not None:
                np.minimum(out, self.max_value, out=out)
            return out
        return ACTIVATIONS[self.kind](x)


@dataclass(frozen=True)
class DenseLayer:
    """``x @ kernel + bias`` followed by element-wise steps, in float64."""

    kernel: np.ndarray  # (inputs, units)
    bias: np.ndarray  # (units,)
    post: tuple[Elementwise, ...] = ()
    # The Keras Rescaling layers folded into kernel and bias, in order, as (scale, offset): Keras
    # computes them as separate float32 steps, which the skew bound (scoring/error_bound.py) models.
    folded: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.kernel.ndim != 2 or self.bias.shape != (self.kernel.shape[1],):
            raise UnsupportedModelError(f"dense layer shapes do not fit: kernel {self.kernel.shape}, bias {self.bias.shape}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x @ self.kernel
        x += self.bias
        for step in self.post:
            x = step(x)
        return x


def _activation_name(value: Any) -> str:
    """Keras serialises an activation as a name, or as a dict with the function's name in it."""
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        config = value.get("config")
        name = config if isinstance(config, str) else (config or {}).get("name") or value.get("class_name")
        return str(name)
    return str(getattr(value, "__name__", value))


def _scalar(value: Any, what: str) -> float:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != 1:
        raise UnsupportedModelError(f"{what} must be a scalar, got shape {np.shape(value)}")
    return float(array[0])


def dense_layers_from_keras(network) -> list[DenseLayer]:
    """A Keras network as a list of affine maps, each followed by element-wise steps.

    Reads what ``housing_platform.core.model`` builds (see its docstring): ``Dense`` (kernel, bias,
    activation), ``Dropout`` (identity at inference), ``Rescaling`` (folded into the preceding affine
    map when nothing sits between them), ``Activation`` and ``ReLU`` (element-wise steps). Any other
    layer raises :class:`UnsupportedModelError` instead of being skipped.
    """
    layers: list[DenseLayer] = []

    def add_step(step: Elementwise, layer) -> None:
        if not layers:
            raise UnsupportedModelError(f"layer {layer.name!r} before any Dense layer is not supported")
        last = layers[-1]
        layers[-1] = DenseLayer(last.kernel, last.bias, (*last.post, step), last.folded)

    for layer in getattr(network, "layers", []):
        kind = type(layer).__name__
        config = layer.get_config()
        if kind in ("InputLayer", "Dropout"):
            continue
        if kind == "Dense":
            weights = layer.get_weights()
            kernel = np.asarray(weights[0], dtype=np.float64)
            bias = np.asarray(weights[1], dtype=np.float64) if config.get("use_bias", True) else np.zeros(kernel.shape[1])
            activation = _activation_name(config.get("activation"))
            layers.append(DenseLayer(kernel, bias, () if activation == "linear" else (Elementwise(activation),)))
        elif kind == "Rescaling":
            scale = _scalar(config.get("scale", 1.0), "Rescaling.scale")
            offset = _scalar(config.get("offset", 0.0), "Rescaling.offset")
            if layers and not layers[-1].post and scale != 0:  # fold: (x @ W + b) * s + o == x @ (W s) + (b s + o)
                last = layers[-1]
                layers[-1] = DenseLayer(last.kernel * scale, last.bias * scale + offset, (), (*last.folded, (scale, offset)))
            else:
                add_step(Elementwise("rescale", scale=scale, offset=offset), layer)
        elif kind == "Activation":
            name = _activation_name(config.get("activation"))
            if name != "linear":
                add_step(Elementwise(name), layer)
        elif kind == "ReLU":
            max_value = config.get("max_value")
            add_step(
                Elementwise(
                    "relu_layer",
                    max_value=None if max_value is None else float(max_value),
                    negative_slope=float(config.get("negative_slope", 0.0) or 0.0),
                    threshold=float(config.get("threshold", 0.0) or 0.0),
                ),
                layer,
            )
        else:
            raise UnsupportedModelError(f"layer {layer.name!r} of type {kind} has no numpy implementation")
    if not layers:
        raise UnsupportedModelError("the network has no Dense layers")
    return layers
