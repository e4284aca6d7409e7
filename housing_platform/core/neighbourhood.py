"""Neighbourhood prices: what the k nearest *training* districts sold for, one definition for every path.

A district's price depends on where it is more finely than 100 cluster centres can say. This feature
looks up the ``k`` (default 20) training districts nearest to a row's (latitude, longitude) and
returns four numbers:

* ``neighbourhood_log_median_value_nearest`` — the median ``log(median_house_value)`` of the
  ``n_nearest`` (default 5) nearest of them: the immediate surroundings;
* ``neighbourhood_log_median_value`` — the same over all ``k``;
* ``neighbourhood_log_median_value_per_income`` — the median of ``log(value / median_income)`` over
  the ``k``: what the area costs for a given income, which the row's own income then scales;
* ``neighbourhood_log_mean_distance`` — ``log(1e-3 + mean distance to the k, in degrees)`` (how densely
  the area is sampled: a sparse neighbourhood's medians say less);

and, when ``n_weighted`` > 0 (the default, 10), two more:

* ``neighbourhood_log_value_distance_weighted`` — the mean ``log(median_house_value)`` of the
  ``n_weighted`` nearest (all ``k`` when ``k`` is smaller), each weighted by ``1 / (1e-3 + distance in degrees)``: the closest count most;
* ``neighbourhood_log_value_spread`` — the standard deviation of ``log(median_house_value)`` over the
  ``k``: how mixed the area is (how much its medians can be trusted for this row).

Measured with the default network (``benchmarks/model_quality.py``, see the README): k = 10 with the
two plain columns moved the test RMSE from $43.5k to $41.7k, k = 20 to $41.4k, the first four to $40.9k;
the last two moved a 128-64 GELU network by about 1.3% (mean of three seeds, README). Transformers
saved before the last two existed have no ``n_weighted`` and keep their four columns.

Fitting stores the training coordinates and the two log columns as plain float64 arrays and nothing else;
the spatial index (scikit-learn's ``KDTree``) is rebuilt from them on first use after loading, so the
persisted transformer (skops: a zip of JSON and ``.npy`` arrays, loaded without pickle) carries no
tree object. Lookups are exact k-nearest (ties broken by the tree, the same way on every path), in
float64.

**Out of fold.** A training row must not see its own label: :meth:`NeighbourhoodPrices.fit_transform`
(what a pipeline's ``fit`` calls, so the next step's scaler is fit on these values) and
:meth:`NeighbourhoodPrices.out_of_fold` answer each training row from its ``k`` nearest *other*
training rows (leave-one-out: the row itself is dropped from its ``k + 1`` nearest; when ``k + 1``
rows share its exact place and the tree did not return it, the farthest is dropped instead). Any
other row (validation, test, a request) uses the ``k`` nearest of all training rows. A leave-one-out
row sees ``n - 1`` candidates where a served row sees ``n``: the smallest possible train/serve gap.

Serving uses the very same :func:`neighbourhood_values` (the pyfunc through the scikit-learn
pipeline, the numpy fast path through ``scoring/scorer.py``), so the raw feature is bit-identical on
both paths; the skew contract (``scoring/verification.py``) covers the rest. When the training set
outgrows memory the index moves to an online store (see the README, "Neighbourhood prices").
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

DEFAULT_NEIGHBOURS = 20
DEFAULT_NEAREST = 5
DEFAULT_WEIGHTED = 10
NEIGHBOURHOOD_COLUMNS = (  # all of them (n_weighted > 0); the first four when n_weighted == 0
    "neighbourhood_log_median_value_nearest",
    "neighbourhood_log_median_value",
    "neighbourhood_log_median_value_per_income",
    "neighbourhood_log_mean_distance",
    "neighbourhood_log_value_distance_weighted",
    "neighbourhood_log_value_spread",
)
N_BASIC_COLUMNS = 4
INPUT_COLUMNS = ("latitude", "longitude", "median_income")  # income is read when fitting only
DISTANCE_OFFSET_DEGREES = 1e-3  # ~100 m: keeps the log finite when every neighbour shares the row's place


def _columns(X) -> np.ndarray:
    """:data:`INPUT_COLUMNS` as an (n, 3) float64 array from a frame with those columns or an array."""
    if hasattr(X, "columns"):
        X = X[list(INPUT_COLUMNS)]
    values = np.asarray(X, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(INPUT_COLUMNS):
        raise ValueError(f"expected columns {INPUT_COLUMNS}, got shape {values.shape}")
    return values


def neighbourhood_values(tree, log_values: np.ndarray, log_values_per_income: np.ndarray, points: np.ndarray,
                         k: int, nearest: int, exclude: np.ndarray | None = None, weighted: int = 0) -> np.ndarray:
    """The neighbourhood columns (:data:`NEIGHBOURHOOD_COLUMNS`) of ``points`` (lat, lon), (n, 6) float64.

    ``weighted`` is ``n_weighted``: 0 gives the first four columns only, (n, 4).

    ``tree`` indexes the training coordinates whose log values (and log values per income) are given;
    ``exclude`` (one training-row position per point, or None) is the row each point must not see
    (leave-one-out).
    """
    points = np.asarray(points, dtype=np.float64)
    n_columns = len(NEIGHBOURHOOD_COLUMNS) if weighted else N_BASIC_COLUMNS
    if len(points) == 0:
        return np.zeros((0, n_columns))
    if exclude is None:
        distances, indices = tree.query(points, k=k)
    else:
        distances, indices = tree.query(points, k=k + 1)
        is_self = indices == np.asarray(exclude)[:, None]
        # Drop the row itself; where the tree did not return it (k + 1 ties at distance 0), the last one.
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
        keep = np.ones_like(is_self)
        keep[np.arange(len(points)), drop] = False
        distances = distances[keep].reshape(len(points), k)
        indices = indices[keep].reshape(len(points), k)
    out = np.empty((len(points), n_columns), dtype=np.float64)
    values = log_values[indices]  # columns sorted by distance (the tree returns them so)
    out[:, 0] = np.median(values[:, :nearest], axis=1)
    out[:, 1] = np.median(values, axis=1)
    out[:, 2] = np.median(log_values_per_income[indices], axis=1)
    out[:, 3] = np.log(DISTANCE_OFFSET_DEGREES + distances.mean(axis=1))
    if weighted:
        weights = 1.0 / (DISTANCE_OFFSET_DEGREES + distances[:, :weighted])
        out[:, 4] = (weights * values[:, :weighted]).sum(axis=1) / weights.sum(axis=1)
        out[:, 5] = values.std(axis=1)
    return out


class NeighbourhoodPrices(TransformerMixin, BaseEstimator):
    """The k-nearest-training-districts features of (latitude, longitude); needs ``y`` to fit.

    Fitted state: ``coordinates_`` (n × 2, degrees), ``log_values_`` and ``log_values_per_income_``
    (n,), plain arrays; the ``KDTree`` is rebuilt from them when first needed (never persisted).
    Input columns :data:`INPUT_COLUMNS`; ``median_income`` is used when fitting only.
    """

    def __init__(self, n_neighbours: int = DEFAULT_NEIGHBOURS, n_nearest: int = DEFAULT_NEAREST,
                 n_weighted: int = DEFAULT_WEIGHTED):
        self.n_neighbours = n_neighbours
        self.n_nearest = n_nearest
        self.n_weighted = n_weighted

    def fit(self, X, y=None):
        if y is None:
            raise ValueError("NeighbourhoodPrices needs the target (median_house_value) to fit")
        columns = _columns(X)
        points = columns[:, :2]
        values = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(values) != len(points):
            raise ValueError(f"{len(points)} coordinates but {len(values)} target values")
        if not (1 <= self.n_neighbours < len(points)):
            raise ValueError(f"n_neighbours must be in [1, {len(points) - 1}] for {len(points)} training rows, "
                             f"not {self.n_neighbours}")
        if not (1 <= self.n_nearest <= self.n_neighbours):
            raise ValueError(f"n_nearest must be in [1, n_neighbours={self.n_neighbours}], not {self.n_nearest}")
        if self.n_weighted < 0:
            raise ValueError(f"n_weighted must be >= 0, not {self.n_weighted}")
        if np.any(values <= 0) or np.any(columns[:, 2] <= 0):
            raise ValueError("the target and median_income must be strictly positive (their logs are taken)")
        self.coordinates_ = np.ascontiguousarray(points)
        self.log_values_ = np.log(values)
        self.log_values_per_income_ = self.log_values_ - np.log(columns[:, 2])
        self.n_features_in_ = len(INPUT_COLUMNS)
        self.feature_names_in_ = np.asarray(INPUT_COLUMNS, dtype=object)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then the OUT-OF-FOLD values of the training rows themselves (see the module docstring)."""
        return self.fit(X, y).out_of_fold(X)

    def transform(self, X):
        check_is_fitted(self, "coordinates_")
        return self.values_at(_columns(X)[:, :2])

    def values_at(self, points: np.ndarray) -> np.ndarray:
        """The columns for (latitude, longitude) ``points`` (n × 2): every training row is a candidate."""
        return neighbourhood_values(self.tree(), self.log_values_, self.log_values_per_income_, points,
                                    self.n_neighbours, self.n_nearest, weighted=self.weighted())

    def out_of_fold(self, X) -> np.ndarray:
        """The values of the training rows, each without its own label. ``X`` must be the fit rows, in order."""
        check_is_fitted(self, "coordinates_")
        points = _columns(X)[:, :2]
        if points.shape != self.coordinates_.shape or not np.array_equal(points, self.coordinates_):
            raise ValueError("out-of-fold values are defined for the training rows only, in the order they were fit")
        return neighbourhood_values(self.tree(), self.log_values_, self.log_values_per_income_, points,
                                    self.n_neighbours, self.n_nearest, exclude=np.arange(len(points)),
                                    weighted=self.weighted())

    def weighted(self) -> int:
        """``n_weighted``, at most ``n_neighbours``; 0 for a transformer saved before the weighted and spread columns."""
        return min(int(getattr(self, "n_weighted", 0)), int(self.n_neighbours))

    def columns(self) -> tuple[str, ...]:
        """This object's output column names (six, or the first four for ``n_weighted`` == 0)."""
        return NEIGHBOURHOOD_COLUMNS if self.weighted() else NEIGHBOURHOOD_COLUMNS[:N_BASIC_COLUMNS]

    def tree(self):
        """The spatial index over ``coordinates_`` (built once per loaded object)."""
        tree = self.__dict__.get("_tree")
        if tree is None:
            from sklearn.neighbors import KDTree

            tree = self.__dict__["_tree"] = KDTree(self.coordinates_)
        return tree

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_tree", None)  # only the arrays are persisted; the index is rebuilt from them
        return state

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.columns(), dtype=object)
