"""The fast scoring path: a model version's transformer + network as a few vectorised numpy operations.

The registered pyfunc (``adapters/pyfunc_model.py``) runs the scikit-learn transformer on a DataFrame
and then the Keras network: ~15 ms for one row, nearly all framework overhead. :class:`FastScorer`
reads every fitted number out of the same objects once — the transformer's medians, scaler, cluster
centres and categories (``features.fitted_statistics``, following the numpy recipe in the
``features`` docstring) and the network's layers (:mod:`housing_platform.scoring.network`) — and
evaluates the same function in numpy: ~50 µs for one row, ~0.9M rows per second per core in float32.
The engineered features are computed in float64; the cluster kernel's argument is one small float64
matrix product, rounded to the dense layers' precision (float64 for the server, float32 for batch)
before the element-wise kernel; the first layer is split by feature block so the full feature
matrix is never built. The neighbourhood-price columns (when the version has them) come from the
very method the transformer calls (``NeighbourhoodPrices.values_at`` on the version's own training
coordinates), so they are the same float64 numbers on both paths.
Equality with the pyfunc is checked at load time
(:mod:`housing_platform.scoring.verification`); rows are not validated here
(:mod:`housing_platform.core.request_rules`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from housing_platform.core.schema import CATEGORICAL_COLUMN, NUMERIC_FEATURE_COLUMNS
from housing_platform.scoring.errors import UnsupportedModelError
from housing_platform.scoring.network import DenseLayer, dense_layers_from_keras, relu
from housing_platform.scoring.parallel import run_parts  # noqa: F401 - batch scoring imports it from here
from housing_platform.scoring.training_ranges import compile_ranges, flag_matrix

# Rows per chunk in batch scoring: the intermediate matrices of one chunk stay in the CPU cache.
CHUNK_ROWS = 4_096
_LOG_FLOOR = 1e-9  # the floor DistrictFeatures applies before every log
_SIMILARITY_FLOOR_EXPONENT = -80.0  # cluster similarities are floored at e^-80 ~ 1.8e-35 (a normal float32)

Columns = Mapping[str, Any]


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
    or :func:`housing_platform.scoring.verification.load_fast_scorer` (a model URI). ``score`` takes
    a DataFrame or a mapping of column name → array-like (numbers with NaN/None for missing; strings
    for ``ocean_proximity``) and returns dollars, one per row. Rows are not validated here (see
    :mod:`housing_platform.core.request_rules`): like the pyfunc, a missing number is imputed with
    the train median and an unknown category one-hots to zeros.

    ``precision``: the features are always computed in float64; the dense layers run in float64
    (the default, used by the server) or float32 (what Keras itself computes in; twice the
    throughput for batch scoring). Both are held to the same contract against the pyfunc: every row
    within its float32 error bound (:mod:`housing_platform.scoring.error_bound`), which accounts for
    the precision used here.
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
    # The fitted core.neighbourhood.NeighbourhoodPrices and its scaler (None / empty: the version has no such block).
    neighbourhood: Any = None
    neighbourhood_means: tuple[float, ...] = ()
    neighbourhood_scales: tuple[float, ...] = ()
    # The version's interval calibration (core.conformal.IntervalCalibration as a dict), None: no intervals.
    intervals: dict | None = None

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
        self._n_neighbourhood = len(self.neighbourhood_means) if self.neighbourhood is not None else 0
        self.n_features = n_engineered + k + len(self.categories) + self._n_neighbourhood
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
            # inverse target transform, z * sigma + mu with mu ~ $200k: in float64 it adds nothing
            # to the fast path's side of the skew bound (error_bound.py), where float32 would add as
            # much again as the registered model's own output rounding.
            last = self.layers[-1]
            self._layers[-1] = DenseLayer(last.kernel, last.bias, last.post)
        # The first layer split by feature block: engineered rows, similarity rows, and per category
        # its one-hot row plus the bias (a last row with the bias alone for an unknown category).
        first_rows = self._layers[0].kernel
        k = len(self.cluster_centers)
        self._engineered_kernel = np.ascontiguousarray(first_rows[:n_engineered])
        self._geo_kernel = np.ascontiguousarray(first_rows[n_engineered : n_engineered + k])
        bias = self.layers[0].bias
        n_onehot = n_engineered + k + len(self.categories)
        self._category_rows = np.vstack([kernel[n_engineered + k : n_onehot] + bias, bias]).astype(dtype)
        self._neighbourhood_kernel = np.ascontiguousarray(first_rows[n_onehot:])
        self._neighbourhood_means = np.asarray(self.neighbourhood_means, dtype=np.float64)
        self._neighbourhood_scales = np.asarray(self.neighbourhood_scales, dtype=np.float64)
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
        self._ranges = compile_ranges(self.feature_ranges)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_objects(
        cls, transformer, network, feature_ranges: dict | None = None, precision: str = "float64",
        intervals: dict | None = None,
    ) -> FastScorer:
        """From a fitted ``features`` pipeline and the Keras network (which maps features to dollars)."""
        from housing_platform.core.features import ENGINEERED_COLUMNS, fitted_statistics, neighbourhood_step

        stats = fitted_statistics(transformer)
        step = neighbourhood_step(transformer)
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
            neighbourhood=step["prices"] if step is not None else None,
            neighbourhood_means=tuple(step["scale"].mean_) if step is not None else (),
            neighbourhood_scales=tuple(step["scale"].scale_) if step is not None else (),
            intervals=dict(intervals) if intervals else None,
        )

    @classmethod
    def from_python_model(cls, python_model, precision: str = "float64") -> FastScorer:
        """From a loaded ``HousingPriceModel`` (``pyfunc.unwrap_python_model()``)."""
        return cls.from_objects(
            python_model.transformer, python_model.network, getattr(python_model, "feature_ranges", None), precision,
            getattr(python_model, "intervals", None),
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

        run_parts(run, starts, threads)
        return out

    def interval_bounds(self, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lower, upper)`` of the version's prediction interval around ``predictions`` (None: not calibrated).

        The interval depends on the prediction alone (:mod:`housing_platform.core.conformal`), so this is
        the same computation on every path.
        """
        if not self.intervals:
            return None
        from housing_platform.core.conformal import intervals

        return intervals(predictions, self.intervals)

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
        if self._n_neighbourhood:
            hidden += self._neighbourhood(numeric).astype(dtype, copy=False) @ self._neighbourhood_kernel
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

    def _neighbourhood(self, numeric: np.ndarray) -> np.ndarray:
        """The standardised neighbourhood-price columns, float64, (n, 6; 4 for older versions); ``numeric`` imputed."""
        values = self.neighbourhood.values_at(numeric[:, [self._lat_col, self._lon_col]])
        return (values - self._neighbourhood_means) / self._neighbourhood_scales

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
            return np.square(relu(argument), out=argument)
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
        n_onehot = n_eng + k + len(self.categories)
        onehot = out[:, n_eng + k : n_onehot]
        onehot.fill(0.0)
        known = codes >= 0
        onehot[np.flatnonzero(known), codes[known]] = 1.0
        if self._n_neighbourhood:
            out[:, n_onehot:] = self._neighbourhood(numeric)
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
        flags = flag_matrix(self._ranges, numeric, categories)
        if flags is None:
            return result
        names, matrix = flags
        rows = np.flatnonzero(matrix.any(axis=1))
        for i, hits in zip(rows.tolist(), matrix[rows].tolist()):
            result[i] = ",".join(name for name, hit in zip(names, hits) if hit)
        return result


def _as_float_array(values) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(values, dtype=np.float64)  # None -> NaN for object sequences
