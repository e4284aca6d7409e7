"""The fast scoring path: the registered model as a few vectorised numpy operations.

The registered pyfunc (``pyfunc_model.py``) runs the scikit-learn transformer on a DataFrame and then
the Keras network: ~15 ms for one row (``model.predict`` would be ~55 ms), nearly all framework
overhead. The model itself is a fixed feature transform followed by a few dense layers, so
:class:`FastScorer` reads every fitted number out of the same objects once — the transformer's
medians, scaler, cluster centres and categories (``features.fitted_statistics``, following the
numpy recipe in the ``features`` docstring) and each Keras layer's weights and element-wise steps
(``Dense`` + activation, ``Rescaling``, ``Activation("exponential")``, ``ReLU(max_value)`` — the
layers ``model.train_model`` appends to map back to dollars) — and evaluates the same function in
numpy: ~50 µs for one row, ~0.9M rows per second per core in float32 batches.

Numerics: the engineered features are computed in float64. The argument of the cluster kernel
(``-γ|p - c|²``, or ``1 - γ|p - c|²/2`` for the default biweight kernel) is one small float64
matrix product around the centres' mean, then rounded to the dense layers' precision before the
element-wise kernel (a square, or ``exp`` floored at ``e^-80`` for the Gaussian kernel of older
versions: denormal floats would slow the next matrix product several-fold). The first layer is split
by feature block — engineered rows, similarity rows, and the one-hot rows as a per-category row
lookup with the bias folded in — so the full feature matrix is never built. The dense layers run in
float64 (the server) or float32 (batch scoring; Keras computes in float32 too). On the 2-core AVX2
machine of ``benchmarks/batch.py`` this scores ~1.4M rows/s in float32 on 2 threads.

Equality with the registered model is a contract, not a hope:

* ``housing_platform_tests/test_scoring.py`` compares :meth:`FastScorer.score` with the registered
  pyfunc's ``predict`` on the whole test split of the real data, in both precisions (relative
  tolerance :data:`SKEW_RTOL` = 1e-5; the observed difference is ~1e-6, Keras's float32 arithmetic),
  and ports every target transform the training code can produce;
* :func:`load_fast_scorer` repeats the comparison on probe rows every time it loads a version and
  refuses a version whose fast path disagrees (:class:`SkewError`); a layer the port does not know
  raises :class:`UnsupportedModelError` rather than being skipped. A model the port does not
  understand is never served wrongly: it fails loudly at load time.

The module also holds the one vectorised implementation of the schema's row rules
(:func:`check_rules`, read from :func:`housing_platform.core.schema.column_rules` and the pandera model's
cross-column checks), used by the API (422 answers) and batch scoring (rejected rows) alike, and
batch scoring of a DataFrame (:func:`score_frame`).

Plain numpy + pandas: no Dagster, no FastAPI; TensorFlow only when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_FEATURE_COLUMNS,
    HousingDistricts,
    column_rules,
)

# Rows per chunk in batch scoring: the intermediate matrices of one chunk stay in the CPU cache.
CHUNK_ROWS = 4_096
# The fast path and the registered model may differ by this much, relatively, on any row.
SKEW_RTOL = 1e-5
# Batch scoring runs the dense layers in float32, as Keras does: 2-3x faster than float64, and
# held to the same SKEW_RTOL. The server keeps float64 (one row is overhead-bound either way).
BATCH_PRECISION = "float32"
_LOG_FLOOR = 1e-9  # the floor DistrictFeatures applies before every log
_SIMILARITY_FLOOR_EXPONENT = -80.0  # cluster similarities are floored at e^-80 ~ 1.8e-35 (a normal float32)

Columns = Mapping[str, Any]


class ScoringError(Exception):
    """A model cannot be turned into a fast scorer, or input cannot be scored."""


class UnsupportedModelError(ScoringError):
    """The network or transformer holds something the numpy port does not implement."""


class SkewError(ScoringError):
    """The fast path disagrees with the registered model on probe rows: the version is not served."""


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

def _relu(x: np.ndarray) -> np.ndarray:
    # x * (x > 0) rather than np.maximum(x, 0): the same numbers (but -0.0), and 3x faster on AVX2
    # CPUs, where numpy's NaN-aware maximum is not vectorised.
    return np.multiply(x, x > 0, out=x)


# Keras activation name -> numpy function (Keras 3 defaults for every parameter). Each may work in place.
ACTIVATIONS: dict[str, Any] = {
    "linear": lambda x: x,
    "relu": _relu,
    "relu6": lambda x: np.clip(x, 0.0, 6.0, out=x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "tanh": lambda x: np.tanh(x, out=x),
    "sigmoid": _sigmoid,
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "softplus": lambda x: np.logaddexp(x, 0.0),
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
    map when nothing sits between them), ``Activation`` and ``ReLU`` (element-wise steps). Also
    ``Normalization`` / ``BatchNormalization`` as affine maps. Any other layer raises
    :class:`UnsupportedModelError` instead of being skipped.
    """
    layers: list[DenseLayer] = []

    def add_step(step: Elementwise, layer) -> None:
        if not layers:
            raise UnsupportedModelError(f"layer {layer.name!r} before any Dense layer is not supported")
        last = layers[-1]
        layers[-1] = DenseLayer(last.kernel, last.bias, (*last.post, step))

    for layer in getattr(network, "layers", []):
        kind = type(layer).__name__
        config = layer.get_config()
        if kind in ("InputLayer", "Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout", "SpatialDropout1D"):
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
            if layers and not layers[-1].post:  # fold: (x @ W + b) * s + o == x @ (W s) + (b s + o)
                last = layers[-1]
                layers[-1] = DenseLayer(last.kernel * scale, last.bias * scale + offset)
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
        elif kind == "Normalization":
            mean = np.asarray(layer.mean, dtype=np.float64).reshape(-1)
            std = np.maximum(np.sqrt(np.asarray(layer.variance, dtype=np.float64).reshape(-1)), 1e-7)
            layers.append(DenseLayer(np.diag(1.0 / std), -mean / std))
        elif kind == "BatchNormalization":
            gamma, beta, mean, variance = _batchnorm_weights(layer, config)
            factor = gamma / np.sqrt(variance + float(config.get("epsilon", 1e-3)))
            layers.append(DenseLayer(np.diag(factor), beta - mean * factor))
        else:
            raise UnsupportedModelError(f"layer {layer.name!r} of type {kind} has no numpy implementation")
    if not layers:
        raise UnsupportedModelError("the network has no Dense layers")
    return layers


def _batchnorm_weights(layer, config) -> tuple[np.ndarray, ...]:
    weights = {w.path.rsplit("/", 1)[-1]: np.asarray(w.numpy(), dtype=np.float64) for w in layer.weights}
    units = weights["moving_mean"].shape[0]
    gamma = weights.get("gamma", np.ones(units)) if config.get("scale", True) else np.ones(units)
    beta = weights.get("beta", np.zeros(units)) if config.get("center", True) else np.zeros(units)
    return gamma, beta, weights["moving_mean"], weights["moving_variance"]


# ---------------------------------------------------------------------------------------------
# The scorer
# ---------------------------------------------------------------------------------------------


def _engineered_plan() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How to compute the engineered columns grouped by kind (raw | logs | log-ratios).

    Returns the raw-column indices to copy, to log, the (numerator, denominator) indices of the
    log-ratios, and ``position``: engineered column ``j`` (``features.ENGINEERED_COLUMNS`` order) is
    computed at ``position[j]``. Computing by group takes three numpy calls instead of twelve.
    """
    from housing_platform.core.features import ENGINEERED_FEATURES

    index = {name: j for j, name in enumerate(NUMERIC_FEATURE_COLUMNS)}
    groups: dict[str, list] = {"raw": [], "log": [], "log_ratio": []}
    placed = []
    for kind, *columns in ENGINEERED_FEATURES.values():
        if kind not in groups:  # a new kind in features.py must be ported here, not silently mis-scored
            raise UnsupportedModelError(f"engineered feature kind {kind!r} has no numpy implementation")
        placed.append((kind, len(groups[kind])))
        groups[kind].append([index[c] for c in columns])
    offsets = {"raw": 0, "log": len(groups["raw"]), "log_ratio": len(groups["raw"]) + len(groups["log"])}
    position = np.array([offsets[kind] + i for kind, i in placed], dtype=np.intp)
    raw = np.array([c[0] for c in groups["raw"]], dtype=np.intp)
    logs = np.array([c[0] for c in groups["log"]], dtype=np.intp)
    ratios = np.array(groups["log_ratio"], dtype=np.intp).reshape(-1, 2).T  # (2, n_ratios)
    return raw, logs, ratios, position


@dataclass
class FastScorer:
    """The transformer + network of one model version as vectorised numpy.

    Build it with :meth:`from_python_model` (a loaded ``HousingPriceModel``), :meth:`from_objects`
    or :func:`load_fast_scorer` (a model URI). ``score`` takes a DataFrame or a mapping of column
    name → array-like (numbers with NaN/None for missing; strings for ``ocean_proximity``) and returns
    dollars, one per row. Rows are not validated here (see :func:`check_rules`): like the pyfunc,
    a missing number is imputed with the train median and an unknown category one-hots to zeros.

    ``precision``: the features are always computed in float64; the dense layers run in float64
    (the default, used by the server) or float32 (what Keras itself computes in; twice the
    throughput for batch scoring). Both are held to the same 1e-5 tolerance against the pyfunc.
    """

    imputer_medians: np.ndarray  # (8,) in NUMERIC_FEATURE_COLUMNS order
    scaler_means: np.ndarray  # (12,) in features.ENGINEERED_COLUMNS order
    scaler_scales: np.ndarray  # (12,)
    cluster_centers: np.ndarray  # (k, 2): latitude, longitude in degrees
    cluster_gamma: float
    categories: tuple[str, ...]
    layers: list[DenseLayer]
    feature_ranges: dict = field(default_factory=dict)
    precision: str = "float64"
    cluster_kernel: str = "gaussian"  # features.KERNELS; transformers saved before the kernel choice are Gaussian

    def __post_init__(self) -> None:
        if self.precision not in ("float64", "float32"):
            raise ValueError(f"precision must be 'float64' or 'float32', not {self.precision!r}")
        if self.cluster_kernel not in ("gaussian", "biweight"):
            raise UnsupportedModelError(f"cluster kernel {self.cluster_kernel!r} has no numpy implementation")
        self.imputer_medians = np.asarray(self.imputer_medians, dtype=np.float64)
        self.cluster_centers = np.asarray(self.cluster_centers, dtype=np.float64).reshape(-1, 2)
        self.categories = tuple(str(c) for c in self.categories)
        self._raw, self._logs, self._ratios, self._position = _engineered_plan()
        n_engineered = len(self._position)
        self._n_engineered = n_engineered
        k = len(self.cluster_centers)
        self.n_features = n_engineered + k + len(self.categories)
        kernel = self.layers[0].kernel
        if self.layers[-1].kernel.shape[1] != 1:
            raise UnsupportedModelError(f"the network must end in one output, not {self.layers[-1].kernel.shape[1]}")
        if kernel.shape[0] != self.n_features:
            raise UnsupportedModelError(
                f"the network takes {kernel.shape[0]} inputs but the transformer makes {self.n_features}"
            )
        # Standardisation, and the first layer's input rows, moved once into the computed order.
        self._means = np.empty(n_engineered)
        self._scales = np.empty(n_engineered)
        self._means[self._position] = np.asarray(self.scaler_means, dtype=np.float64)
        self._scales[self._position] = np.asarray(self.scaler_scales, dtype=np.float64)
        first = kernel.copy()
        first[self._position] = kernel[:n_engineered]
        dtype = np.dtype(self.precision)
        self._dtype = dtype
        self._layers = [
            DenseLayer(layer.kernel.astype(dtype), layer.bias.astype(dtype), layer.post)
            for layer in [DenseLayer(first, self.layers[0].bias, self.layers[0].post), *self.layers[1:]]
        ]
        if len(self._layers) > 1:
            # The output layer stays float64 (a dot product per row: free). It holds the folded
            # inverse target transform, z * sigma + mu with mu ~ $200k: in float32 its rounding alone
            # is ~$0.03, which is more than 1e-5 of a low prediction.
            last = self.layers[-1]
            self._layers[-1] = DenseLayer(last.kernel, last.bias, last.post)
        # The first layer split by feature block: engineered rows, similarity rows, and per category
        # its one-hot row plus the bias (a last row with the bias alone for an unknown category).
        first_rows = self._layers[0].kernel
        k = len(self.cluster_centers)
        self._engineered_kernel = np.ascontiguousarray(first_rows[:n_engineered])
        self._geo_kernel = np.ascontiguousarray(first_rows[n_engineered : n_engineered + k])
        bias = self.layers[0].bias
        self._category_rows = np.vstack([kernel[n_engineered + k :] + bias, bias]).astype(dtype)
        self._category_index = {c: i for i, c in enumerate(self.categories)}
        # Cluster similarity as one small matmul: with coordinates centred on (lat0, lon0),
        # -gamma * |p - c|^2 = [dlat, dlon, dlat^2 + dlon^2, 1] @ [2g c_lat; 2g c_lon; -g; -g |c|^2].
        self._lat_col = NUMERIC_FEATURE_COLUMNS.index("latitude")
        self._lon_col = NUMERIC_FEATURE_COLUMNS.index("longitude")
        self._geo_origin = self.cluster_centers.mean(axis=0) if k else np.zeros(2)
        centred = self.cluster_centers - self._geo_origin
        gamma = float(self.cluster_gamma)
        self._geo_matrix = np.vstack(
            [2 * gamma * centred[:, 0], 2 * gamma * centred[:, 1], np.full(k, -gamma), -gamma * (centred**2).sum(axis=1)]
        )
        if self.cluster_kernel == "biweight":  # the same product gives 1 - gamma |p - c|^2 / 2 directly
            self._geo_matrix *= 0.5
            self._geo_matrix[3] += 1.0
        self._ranges = _compile_ranges(self.feature_ranges)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_objects(
        cls, transformer, network, feature_ranges: dict | None = None, precision: str = "float64"
    ) -> FastScorer:
        """From a fitted ``features`` pipeline and the Keras network (which maps features to dollars)."""
        from housing_platform.core.features import ENGINEERED_COLUMNS, fitted_statistics

        stats = fitted_statistics(transformer)
        if tuple(stats["scaler_means"]) != ENGINEERED_COLUMNS:
            raise UnsupportedModelError("the transformer's engineered columns differ from features.ENGINEERED_COLUMNS")
        return cls(
            imputer_medians=[stats["imputer_medians"][c] for c in NUMERIC_FEATURE_COLUMNS],
            scaler_means=list(stats["scaler_means"].values()),
            scaler_scales=list(stats["scaler_scales"].values()),
            cluster_centers=stats["cluster_centers_lat_lon"],
            cluster_gamma=stats["cluster_gamma"],
            cluster_kernel=stats["cluster_kernel"],
            categories=stats["ocean_proximity_categories"],
            layers=dense_layers_from_keras(network),
            feature_ranges=dict(feature_ranges or {}),
            precision=precision,
        )

    @classmethod
    def from_python_model(cls, python_model, precision: str = "float64") -> FastScorer:
        """From a loaded ``HousingPriceModel`` (``pyfunc.unwrap_python_model()``)."""
        return cls.from_objects(
            python_model.transformer, python_model.network, getattr(python_model, "feature_ranges", None), precision
        )

    def with_precision(self, precision: str) -> FastScorer:
        """The same model with its dense layers in another precision."""
        return dataclasses.replace(self, precision=precision)

    # -- inputs ---------------------------------------------------------------------------------

    def numeric_matrix(self, columns: Columns | pd.DataFrame) -> np.ndarray:
        """The 8 raw numeric columns as an (n, 8) float64 matrix (NaN where missing)."""
        if isinstance(columns, pd.DataFrame):
            return columns[list(NUMERIC_FEATURE_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
        first = columns[NUMERIC_FEATURE_COLUMNS[0]]
        out = np.empty((len(first), len(NUMERIC_FEATURE_COLUMNS)), dtype=np.float64)
        for j, name in enumerate(NUMERIC_FEATURE_COLUMNS):
            out[:, j] = _as_float_array(columns[name])
        return out

    def category_codes(self, values) -> np.ndarray:
        """Index of each value in ``categories``; -1 for an unknown or missing category."""
        if isinstance(values, pd.Series):
            values = values.to_numpy()
        if len(values) <= 64:
            get = self._category_index.get
            return np.fromiter((get(v, -1) for v in values), dtype=np.intp, count=len(values))
        return pd.Categorical(values, categories=self.categories).codes.astype(np.intp)

    # -- scoring --------------------------------------------------------------------------------

    def transform(self, columns: Columns | pd.DataFrame) -> np.ndarray:
        """The model matrix in float64, equal to ``features.transform`` (which rounds it to float32)."""
        matrix = self._features(self.numeric_matrix(columns), self.category_codes(columns[CATEGORICAL_COLUMN]))
        n = self._n_engineered
        engineered = matrix[:, :n].copy()
        matrix[:, :n] = engineered[:, self._position]
        return matrix

    def score(self, columns: Columns | pd.DataFrame) -> np.ndarray:
        """Predicted median house value in dollars, float64, one per row."""
        return self.score_arrays(self.numeric_matrix(columns), self.category_codes(columns[CATEGORICAL_COLUMN]))

    def score_arrays(self, numeric: np.ndarray, codes: np.ndarray, threads: int = 1) -> np.ndarray:
        """:meth:`score` from :meth:`numeric_matrix` and :meth:`category_codes`.

        Large inputs are scored in chunks of :data:`CHUNK_ROWS` (the intermediate matrices stay in
        cache); with ``threads`` > 1, chunks run in that many threads (numpy releases the GIL), each
        with single-threaded BLAS.
        """
        n = len(numeric)
        if n <= CHUNK_ROWS:
            return self._score(numeric, codes)
        out = np.empty(n, dtype=np.float64)
        starts = range(0, n, CHUNK_ROWS)

        def run(start: int) -> None:
            stop = min(start + CHUNK_ROWS, n)
            out[start:stop] = self._score(numeric[start:stop], codes[start:stop])

        _run_parts(run, starts, threads)
        return out

    def _score(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The network on one chunk, its first layer split by feature block (see ``__post_init__``).

        The one-hot block times its kernel rows is a row lookup (the bias folded into each row); the
        similarities are computed in the layers' precision, without building the whole feature matrix.
        """
        numeric = self._imputed(numeric)
        dtype = self._dtype
        hidden = self._engineered(numeric).astype(dtype, copy=False) @ self._engineered_kernel
        if len(self.cluster_centers):
            hidden += self._similarities(numeric, dtype) @ self._geo_kernel
        hidden += self._category_rows[codes]  # code -1 (unknown: all-zero one-hot) picks the bias alone
        for step in self._layers[0].post:
            hidden = step(hidden)
        for layer in self._layers[1:]:
            hidden = layer(hidden)
        return hidden[:, 0].astype(np.float64)

    def _imputed(self, numeric: np.ndarray) -> np.ndarray:
        missing = np.isnan(numeric)
        return np.where(missing, self.imputer_medians, numeric) if missing.any() else numeric

    def _engineered(self, numeric: np.ndarray) -> np.ndarray:
        """The standardised engineered columns in computed order, float64, (n, 12); ``numeric`` imputed."""
        n_raw, n_log = len(self._raw), len(self._logs)
        out = np.empty((len(numeric), self._n_engineered), dtype=np.float64)
        out[:, :n_raw] = numeric[:, self._raw]
        floored = np.maximum(numeric, _LOG_FLOOR)
        np.log(floored[:, self._logs], out=out[:, n_raw : n_raw + n_log])
        np.log(floored[:, self._ratios[0]] / floored[:, self._ratios[1]], out=out[:, n_raw + n_log :])
        out -= self._means
        out /= self._scales
        return out

    def _similarities(self, numeric: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Every centre's kernel similarity, (n, k) in ``dtype``; ``numeric`` imputed.

        The kernel's argument (``-gamma |p - c|^2``, or ``1 - gamma |p - c|^2 / 2`` for the biweight
        kernel) is one small float64 matrix product around the centres' mean — float64, because
        the expansion cancels large terms — then rounded to ``dtype`` (Keras sees the similarities in
        float32 anyway) before the element-wise kernel.
        """
        points = np.empty((len(numeric), 4))
        np.subtract(numeric[:, self._lat_col], self._geo_origin[0], out=points[:, 0])
        np.subtract(numeric[:, self._lon_col], self._geo_origin[1], out=points[:, 1])
        np.einsum("ij,ij->i", points[:, :2], points[:, :2], out=points[:, 2])
        points[:, 3] = 1.0
        argument = (points @ self._geo_matrix).astype(dtype, copy=False)
        if self.cluster_kernel == "biweight":
            return np.square(_relu(argument), out=argument)
        # Gaussian similarities of far-away centres are floored at e^-80 (~1.8e-35) instead of
        # underflowing: they contribute nothing measurable, while denormal floats would slow the next
        # matrix product several-fold and exp() of very negative numbers takes numpy's slow path.
        np.maximum(argument, _SIMILARITY_FLOOR_EXPONENT, out=argument)
        return np.exp(argument, out=argument)

    def _features(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """[standardised engineered (computed order) | cluster similarities | one-hot] as (n, features), float64."""
        numeric = self._imputed(numeric)
        n, n_eng, k = len(numeric), self._n_engineered, len(self.cluster_centers)
        out = np.empty((n, self.n_features), dtype=np.float64)
        out[:, :n_eng] = self._engineered(numeric)
        if k:
            out[:, n_eng : n_eng + k] = self._similarities(numeric)
        onehot = out[:, n_eng + k :]
        onehot.fill(0.0)
        known = codes >= 0
        onehot[np.flatnonzero(known), codes[known]] = 1.0
        return out

    # -- training-range flags -------------------------------------------------------------------

    def out_of_range(self, columns: Columns | pd.DataFrame, numeric: np.ndarray | None = None) -> list[str]:
        """Per row, the comma-separated features outside the TRAINING range ("" when none).

        Numbers below the train minimum or above the train maximum, and categories never seen in
        training, are flagged; missing values are not. The version's ``feature_ranges`` decide.
        """
        if numeric is None:
            numeric = self.numeric_matrix(columns)
        n = len(numeric)
        result = [""] * n
        categories = columns[CATEGORICAL_COLUMN] if self._ranges[3] is not None else None
        flags = _flag_matrix(self._ranges, numeric, categories)
        if flags is None:
            return result
        names, matrix = flags
        rows = np.flatnonzero(matrix.any(axis=1))
        for i, hits in zip(rows.tolist(), matrix[rows].tolist()):
            result[i] = ",".join(name for name, hit in zip(names, hits) if hit)
        return result


def _run_parts(run, starts: range, threads: int) -> None:
    """``run(start)`` for every start: in order on one thread, or on ``threads`` threads, each with
    single-threaded BLAS (numpy releases the GIL; BLAS threads on top would oversubscribe the cores)."""
    if threads <= 1 or len(starts) <= 1:
        for start in starts:
            run(start)
        return
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, starts))


def _as_float_array(values) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(values, dtype=np.float64)  # None -> NaN for object sequences


def _compile_ranges(feature_ranges: dict) -> tuple:
    """(numeric column positions, lows, highs, known categories or None) from feature_ranges JSON."""
    positions, lows, highs = [], [], []
    for j, name in enumerate(NUMERIC_FEATURE_COLUMNS):
        spec = feature_ranges.get(name)
        if spec and "min" in spec and "max" in spec:
            positions.append(j)
            lows.append(float(spec["min"]))
            highs.append(float(spec["max"]))
    categories = feature_ranges.get(CATEGORICAL_COLUMN, {}).get("categories")
    known = frozenset(categories) if categories else None
    return np.array(positions, dtype=np.intp), np.array(lows), np.array(highs), known


def _flag_matrix(ranges: tuple, numeric: np.ndarray, categories) -> tuple[list[str], np.ndarray] | None:
    positions, lows, highs, known = ranges
    names = [NUMERIC_FEATURE_COLUMNS[j] for j in positions]
    parts = []
    if len(positions):
        values = numeric[:, positions]
        parts.append((values < lows) | (values > highs))  # NaN compares False: missing is not flagged
    if known is not None and categories is not None:
        if len(numeric) <= 64:
            unseen = np.fromiter((v not in known for v in categories), dtype=bool, count=len(numeric))
        else:
            unseen = ~pd.Series(categories, dtype=object).isin(list(known)).to_numpy()
        parts.append(unseen[:, None])
        names.append(CATEGORICAL_COLUMN)
    if not parts:
        return None
    return names, np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


# ---------------------------------------------------------------------------------------------
# The schema's row rules, vectorised
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """Rows breaking one rule: ``field`` and ``rule`` name it, ``message`` says it to a person."""

    field: str  # a column, or "a, b" for a cross-column rule
    rule: str  # e.g. "not null", "finite", "> 0", "one of [...]", "total_bedrooms <= total_rooms"
    rows: np.ndarray  # positions of the failing rows
    message: str


_CROSS_RULE = re.compile(r"^\s*(\w+)\s*(<=|<|>=|>)\s*(\w+)\s*$")


def _cross_rules() -> tuple[tuple[str, str, str], ...]:
    """The pandera model's dataframe checks, each "a OP b" read from its name (one source of truth)."""
    rules = []
    for check in HousingDistricts.to_schema().checks:
        match = _CROSS_RULE.match(check.name or "")
        if not match:
            raise RuntimeError(
                f"schema check {check.name!r} has no vectorised counterpart in housing_platform.scoring.scorer; "
                "name it 'column OP column' or implement it there"
            )
        left, op, right = match.groups()
        if left not in NUMERIC_FEATURE_COLUMNS or right not in NUMERIC_FEATURE_COLUMNS:
            raise RuntimeError(f"schema check {check.name!r} compares columns that are not numeric features")
        rules.append((left, op, right))
    return tuple(rules)


COLUMN_RULES = column_rules()
CROSS_RULES = _cross_rules()


def _bound_rule(rule, which: str) -> tuple[str, float] | None:
    """("op", limit) of a rule's minimum or maximum, e.g. (">", 0.0); None if unbounded."""
    value = getattr(rule, which)
    if value is None:
        return None
    inclusive = getattr(rule, f"{which}_inclusive")
    if which == "minimum":
        return (">=" if inclusive else ">"), value
    return ("<=" if inclusive else "<"), value


def _bound_arrays() -> tuple[np.ndarray, ...]:
    """Per numeric column: lower bound, inclusive?, upper bound, inclusive?, nullable? (±inf: none)."""
    low, low_inclusive, high, high_inclusive, nullable = [], [], [], [], []
    for name in NUMERIC_FEATURE_COLUMNS:
        rule = COLUMN_RULES[name]
        low.append(-math.inf if rule.minimum is None else rule.minimum)
        low_inclusive.append(rule.minimum_inclusive)
        high.append(math.inf if rule.maximum is None else rule.maximum)
        high_inclusive.append(rule.maximum_inclusive)
        nullable.append(rule.nullable)
    return tuple(np.array(a) for a in (low, low_inclusive, high, high_inclusive, nullable))


_LOW, _LOW_INCLUSIVE, _HIGH, _HIGH_INCLUSIVE, _NULLABLE = _bound_arrays()
# The same bounds as inclusive, finite limits: low <= x <= high holds exactly for the values that pass
# (an exclusive bound moves to the next float; an absent one to the largest finite float, so that
# ±inf and NaN fall outside). One pass over the rows decides whether any rule needs a closer look.
_LOW_OK = np.where(_LOW_INCLUSIVE, _LOW, np.nextafter(_LOW, np.inf)).clip(-np.finfo(np.float64).max, None)
_HIGH_OK = np.where(_HIGH_INCLUSIVE, _HIGH, np.nextafter(_HIGH, -np.inf)).clip(None, np.finfo(np.float64).max)
_CROSS_INDEX = tuple(
    (NUMERIC_FEATURE_COLUMNS.index(left), op, NUMERIC_FEATURE_COLUMNS.index(right)) for left, op, right in CROSS_RULES
)
_ALLOWED_CATEGORIES = frozenset(COLUMN_RULES[CATEGORICAL_COLUMN].allowed or ())
# "a OP b" is broken where the opposite comparison holds (False for NaN: a missing value passes).
_BROKEN = {"<=": np.greater, "<": np.greater_equal, ">=": np.less, ">": np.less_equal}


def check_rules(numeric: np.ndarray, categories) -> list[Violation]:
    """Every schema rule the rows break, vectorised.

    ``numeric`` is the (n, 8) float64 matrix of :data:`NUMERIC_FEATURE_COLUMNS` with NaN for a
    missing value; ``categories`` the ``ocean_proximity`` values. Null where the schema forbids it,
    ±inf, a bound, an unknown category and each cross-column rule (a missing value passes a
    cross-column rule, as in the pandera model) give one :class:`Violation` each. All columns are
    checked at once; per-column detail is only worked out when something failed.
    """
    n = len(numeric)
    violations: list[Violation] = []
    with np.errstate(invalid="ignore"):
        inside = (numeric >= _LOW_OK) & (numeric <= _HIGH_OK)
    if not inside.all() and not (inside | (np.isnan(numeric) & _NULLABLE)).all():
        with np.errstate(invalid="ignore"):
            below = np.where(_LOW_INCLUSIVE, numeric < _LOW, numeric <= _LOW)
            above = np.where(_HIGH_INCLUSIVE, numeric > _HIGH, numeric >= _HIGH)
        null = np.isnan(numeric)
        infinite = np.isinf(numeric)
        for j, name in enumerate(NUMERIC_FEATURE_COLUMNS):
            rule = COLUMN_RULES[name]
            if not rule.nullable:
                _add(violations, null[:, j], name, "not null", f"{name} is required (got null)", None)
            _add(violations, infinite[:, j], name, "finite", f"{name} must be a finite number", None)
            for which, mask in (("minimum", below[:, j]), ("maximum", above[:, j])):
                bound = _bound_rule(rule, which)
                if bound is not None:
                    op, limit = bound
                    _add(violations, mask, name, f"{op} {limit:g}", f"{name} must be {op} {limit:g}", None)
    if n <= 64:
        bad = np.array([v not in _ALLOWED_CATEGORIES for v in categories], dtype=bool)
    else:
        bad = ~pd.Series(categories, dtype=object).isin(list(_ALLOWED_CATEGORIES)).to_numpy()
    if bad.any():
        shown = ", ".join(repr(a) for a in COLUMN_RULES[CATEGORICAL_COLUMN].allowed or ())
        _add(violations, bad, CATEGORICAL_COLUMN, f"one of [{shown}]", f"{CATEGORICAL_COLUMN} must be one of {shown}", None)
    for (left, op, right), (i, _, j) in zip(CROSS_RULES, _CROSS_INDEX):
        with np.errstate(invalid="ignore"):
            broken = _BROKEN[op](numeric[:, i], numeric[:, j])  # NaN on either side compares False: passes
        _add(violations, broken, f"{left}, {right}", f"{left} {op} {right}", f"{left} must be {op} {right}", None)
    return violations



def _add(violations: list[Violation], mask: np.ndarray, name: str, rule: str, message: str, values) -> None:
    if mask.any():
        violations.append(Violation(field=name, rule=rule, rows=np.flatnonzero(mask), message=message))


def rejected_rules_per_row(violations: list[Violation], n: int) -> np.ndarray:
    """Per row, "; "-joined ``field rule`` of every rule it breaks ("" for a valid row), as an object array."""
    reasons: dict[int, list[str]] = {}
    for violation in violations:
        text = violation.rule if "," in violation.field else f"{violation.field} {violation.rule}"
        for i in violation.rows.tolist():
            reasons.setdefault(i, []).append(text)
    out = np.full(n, "", dtype=object)
    for i, texts in reasons.items():
        out[i] = "; ".join(texts)
    return out


# ---------------------------------------------------------------------------------------------
# Loading a registered version
# ---------------------------------------------------------------------------------------------

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")


@dataclass(frozen=True)
class ModelReference:
    """A ``models:/`` URI taken apart: a registered model name and an alias or a version."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelReference:
        match = _MODELS_URI.match(uri.strip())
        if not match:
            raise ScoringError(
                f"model URI {uri!r} is not of the form models:/<name>@<alias> or models:/<name>/<version>"
            )
        return cls(match["name"], match["alias"], match["version"])

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def resolve_version(registry, reference: ModelReference) -> str:
    """The version number an alias points at now (or the fixed version); ScoringError if none."""
    if reference.alias is None:
        if reference.version == "latest":
            versions = registry.client.search_model_versions(f"name='{reference.name}'")
            if not versions:
                raise ScoringError(f"registered model {reference.name!r} has no versions")
            return str(max(int(v.version) for v in versions))
        return str(reference.version)
    found = registry.version_by_alias(reference.alias)
    if found is None:
        raise ScoringError(f"no version of {reference.name!r} has the alias {reference.alias!r} yet")
    return found.version


def probe_frame(scorer: FastScorer) -> pd.DataFrame:
    """Rows to compare the fast path with the registered model on at load time.

    Train medians with every category, the train minimum and maximum of each numeric feature (when
    the version recorded them), and one row with a missing ``total_bedrooms`` (imputation).
    """
    base = dict(zip(NUMERIC_FEATURE_COLUMNS, scorer.imputer_medians.tolist()))
    rows = [{**base, CATEGORICAL_COLUMN: c} for c in scorer.categories]
    for bound in ("min", "max"):
        row = dict(base)
        for name in NUMERIC_FEATURE_COLUMNS:
            spec = scorer.feature_ranges.get(name) or {}
            if bound in spec:
                row[name] = float(spec[bound])
        rows.append({**row, CATEGORICAL_COLUMN: scorer.categories[0]})
    rows.append({**base, "total_bedrooms": np.nan, CATEGORICAL_COLUMN: scorer.categories[-1]})
    return pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))


def verify_against(scorer: FastScorer, python_model, frame: pd.DataFrame | None = None, rtol: float = SKEW_RTOL) -> float:
    """Largest relative difference between the fast path and ``python_model.predict``; SkewError above ``rtol``."""
    frame = probe_frame(scorer) if frame is None else frame
    expected = np.asarray(python_model.predict(None, frame), dtype=np.float64).reshape(-1)
    actual = scorer.score(frame)
    worst = relative_difference(actual, expected)
    if not worst <= rtol:
        raise SkewError(
            f"the fast path differs from the registered model by {worst:.3g} (relative) on probe rows, above {rtol:g}"
        )
    return worst


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |a - e| / |e| (NaN on either side counts as an infinite difference unless both are NaN)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    both_nan = np.isnan(actual) & np.isnan(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(actual - expected) / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    rel = np.where(both_nan, 0.0, np.where(np.isnan(rel), np.inf, rel))
    return float(rel.max(initial=0.0))


def load_fast_scorer(model_uri: str, *, verify: bool = True, precision: str = "float64") -> FastScorer:
    """Load a registered version (a concrete ``models:/name/N`` URI) and derive its fast path.

    The pyfunc is loaded exactly as any consumer would (``mlflow.pyfunc.load_model``), its python
    model unwrapped and read into a :class:`FastScorer`; with ``verify`` (the default) the two are
    compared on :func:`probe_frame` rows and a :class:`SkewError` raised if they disagree.
    """
    import mlflow

    try:
        pyfunc = mlflow.pyfunc.load_model(model_uri)
    except Exception as error:  # MLflow raises several types for a missing or unreadable model
        raise ScoringError(f"cannot load {model_uri}: {type(error).__name__}: {error}") from error
    python_model = pyfunc.unwrap_python_model()
    scorer = FastScorer.from_python_model(python_model, precision=precision)
    if verify:
        verify_against(scorer, python_model)
    return scorer


# ---------------------------------------------------------------------------------------------
# Batch scoring
# ---------------------------------------------------------------------------------------------

PREDICTION_COLUMN = "prediction"
MODEL_VERSION_COLUMN = "model_version"
OUT_OF_RANGE_COLUMN = "out_of_range"
REJECTED_COLUMN = "rejected_rules"


class InputFileError(ScoringError):
    """A batch input file cannot be read or lacks feature columns."""


def read_districts(path) -> pd.DataFrame:
    """A CSV or Parquet file of districts (by suffix; ``.csv.gz`` works too)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as error:  # pandas raises many types for an unreadable file
        raise InputFileError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputFileError(f"{path}: missing feature column(s): {', '.join(missing)}")
    return frame


# Rows per part in score_frame: each part is checked, scored and flagged by one thread.
BATCH_PART_ROWS = 65_536


def score_frame(scorer: FastScorer, frame: pd.DataFrame, model_version: str, threads: int | None = None) -> pd.DataFrame:
    """The input rows plus ``prediction`` (USD), ``model_version``, ``out_of_range`` and ``rejected_rules``.

    Rows breaking a schema rule are not scored (``prediction`` NaN, the rules in ``rejected_rules``);
    the others go through the fast path. Numbers that are not numbers (text in a numeric column)
    count as missing, and are then rejected by the ``not null`` rule where the schema demands a value.
    Large inputs are processed in parts of :data:`BATCH_PART_ROWS` rows — rule checks, scoring and
    training-range flags together — on ``threads`` threads (numpy releases the GIL).
    """
    n = len(frame)
    numeric = np.empty((n, len(NUMERIC_FEATURE_COLUMNS)))
    for j, name in enumerate(NUMERIC_FEATURE_COLUMNS):
        numeric[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    categories = frame[CATEGORICAL_COLUMN].to_numpy(dtype=object)
    predictions = np.full(n, np.nan)
    flags = np.full(n, "", dtype=object)
    rejected = np.full(n, "", dtype=object)

    def run(start: int) -> None:
        part = slice(start, min(start + BATCH_PART_ROWS, n))
        part_numeric, part_categories = numeric[part], categories[part]
        violations = check_rules(part_numeric, part_categories)
        valid = np.ones(len(part_numeric), dtype=bool)
        for violation in violations:
            valid[violation.rows] = False
        if violations:
            rejected[part] = rejected_rules_per_row(violations, len(part_numeric))
        if valid.any():
            rows = np.flatnonzero(valid) if not valid.all() else slice(None)
            codes = scorer.category_codes(part_categories[rows])
            predictions[part][rows] = scorer.score_arrays(part_numeric[rows], codes)
        flags[part] = scorer.out_of_range({CATEGORICAL_COLUMN: part_categories}, numeric=part_numeric)

    threads = threads if threads is not None else min(4, os.cpu_count() or 1)
    starts = range(0, n, BATCH_PART_ROWS)
    _run_parts(run, starts, threads)
    out = frame.copy(deep=False)  # new columns go to the copy only; the input columns are not duplicated
    out[PREDICTION_COLUMN] = predictions
    out[MODEL_VERSION_COLUMN] = str(model_version)
    out[OUT_OF_RANGE_COLUMN] = flags
    out[REJECTED_COLUMN] = rejected
    return out
