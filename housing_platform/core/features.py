"""Feature preprocessing: a scikit-learn pipeline fit on the TRAIN split only.

Every feature is computable from one request (one district's raw columns) and the fitted state the
transformer carries (the neighbourhood prices look the request's place up among the training districts
stored in it), so the same transform serves online. The fitted transformer (:func:`build_transformer`
then ``.fit(train[FEATURE_COLUMNS], train[TARGET_COLUMN])``) is::

    Pipeline
    ├── "impute"   ColumnTransformer (pandas output)
    │     ├── "median"   SimpleImputer(strategy="median")      on NUMERIC_FEATURE_COLUMNS
    │     └── "category" "passthrough"                         on ocean_proximity
    └── "features" ColumnTransformer (numpy output, columns in this order)
          ├── "numeric"  Pipeline
          │     ├── "engineer" DistrictFeatures                  (stateless formulas, see ENGINEERED_COLUMNS)
          │     └── "scale"    StandardScaler
          ├── "geo"      ClusterSimilarity                       on (latitude, longitude)
          ├── "category" OneHotEncoder(handle_unknown="ignore")  on ocean_proximity
          └── "neighbourhood" Pipeline                on (latitude, longitude, median_income); if neighbours > 0
                ├── "prices" NeighbourhoodPrices                 (k nearest TRAINING districts: core/neighbourhood.py)
                └── "scale"  StandardScaler

Re-implementing ``transform`` with numpy from the fitted parameters (``t`` is the fitted pipeline):

1. ``x = frame[NUMERIC_FEATURE_COLUMNS]``; replace NaN in column ``j`` with
   ``t["impute"].named_transformers_["median"].statistics_[j]``.
2. Engineered columns, in :data:`ENGINEERED_COLUMNS` order: the raw ``longitude``, ``latitude``,
   ``housing_median_age``; ``log(total_rooms)``, ``log(total_bedrooms)``, ``log(population)``,
   ``log(households)``, ``log(median_income)`` (natural log; every value is > 0 by the schema);
   ``log(total_rooms / households)``, ``log(total_bedrooms / total_rooms)``,
   ``log(population / households)``; the plain ``median_income``. Then
   ``(e - scale.mean_) / scale.scale_`` with ``scale = t["features"].named_transformers_["numeric"]["scale"]``.
3. ``g = t["features"].named_transformers_["geo"]``: with ``c = g.cluster_centers_`` (k × 2, columns
   latitude, longitude in degrees), ``gamma = g.gamma`` and ``d2 = (lat - c[:, 0])**2 + (lon - c[:, 1])**2``:
   ``maximum(1 - gamma * d2 / 2, 0)**2`` for ``g.kernel == "biweight"`` (the default), or
   ``exp(-gamma * d2)`` for ``"gaussian"`` (and for transformers saved before ``kernel`` existed)
   → k columns, unscaled.
4. ``o = t["features"].named_transformers_["category"]``: one column per ``o.categories_[0]`` entry
   (fixed to OCEAN_PROXIMITY_CATEGORIES), 1.0 where equal; an unknown category is all zeros.
5. ``p = t["features"].named_transformers_["neighbourhood"]`` (when present):
   ``(p["prices"].values_at((lat, lon)) - scale.mean_) / scale.scale_`` with ``scale = p["scale"]`` —
   the same function, not a re-implementation (6 columns; 4 for a transformer saved before the last two
   existed; see ``core/neighbourhood.py``).
6. Concatenate [2, 3, 4, 5]: :func:`feature_names` gives the names, :func:`fitted_statistics` the numbers.

The neighbourhood block needs the target to fit and answers the TRAINING rows out of fold (each
without its own label): fitting the pipeline fits its scaler on those values, and the training rows'
model matrix is ``transform(t, train, out_of_fold=True)``; every other row uses plain ``transform``.

Persistence is skops (never pickle); :func:`load_transformer` passes an explicit list of the types the
file may contain (:data:`TRUSTED_TYPES`) and refuses anything else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from housing_platform.core.neighbourhood import DEFAULT_NEIGHBOURS, NeighbourhoodPrices
from housing_platform.core.neighbourhood import INPUT_COLUMNS as NEIGHBOURHOOD_INPUTS
from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_FEATURE_COLUMNS,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET_COLUMN,
)

GEO_COLUMNS = ("latitude", "longitude")

# name -> (kind, *raw columns). Kinds: "raw" x, "log" log(x), "log_ratio" log(x / y).
ENGINEERED_FEATURES: dict[str, tuple[str, ...]] = {
    "longitude": ("raw", "longitude"),
    "latitude": ("raw", "latitude"),
    "housing_median_age": ("raw", "housing_median_age"),
    "log_total_rooms": ("log", "total_rooms"),
    "log_total_bedrooms": ("log", "total_bedrooms"),
    "log_population": ("log", "population"),
    "log_households": ("log", "households"),
    "log_median_income": ("log", "median_income"),
    "log_rooms_per_household": ("log_ratio", "total_rooms", "households"),
    "log_bedrooms_per_room": ("log_ratio", "total_bedrooms", "total_rooms"),
    "log_population_per_household": ("log_ratio", "population", "households"),
    "median_income": ("raw", "median_income"),
}
ENGINEERED_COLUMNS = tuple(ENGINEERED_FEATURES)

# Defaults of the geographic features (tuned with benchmarks/model_quality.py and benchmarks/batch.py:
# 200 Gaussian centres at gamma 40 scored $42.7k but cost 5x the multiply-adds per row; 100 centres at
# gamma 30 score $43.5-43.6k with either kernel; 64-80 centres cost $1-2k of RMSE). The biweight
# kernel needs no exp() — the most expensive step of batch scoring on AVX2 CPUs — and is exactly 0
# beyond its radius, sqrt(2 / gamma) = 0.26° (~29 km) at gamma 30.
DEFAULT_N_CLUSTERS = 100
DEFAULT_GAMMA = 30.0  # 1 / degree²: both kernels fall as 1 - gamma * d² near a centre
DEFAULT_KERNEL = "biweight"
KERNELS = ("biweight", "gaussian")
DEFAULT_KMEANS_INIT = 3  # k-means restarts; more cost seconds and did not change the RMSE
DEFAULT_RANDOM_STATE = 42


class DistrictFeatures(TransformerMixin, BaseEstimator):
    """Stateless per-row formulas (:data:`ENGINEERED_FEATURES`) on the imputed numeric columns.

    Logs clip their argument at a tiny positive number so a malformed row cannot produce ``-inf``
    (the schema guarantees every count and income is > 0, so the clip never fires on valid data).
    """

    def fit(self, X, y=None):
        frame = _as_frame(X, NUMERIC_FEATURE_COLUMNS)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        frame = _as_frame(X, NUMERIC_FEATURE_COLUMNS)
        out = np.empty((len(frame), len(ENGINEERED_FEATURES)), dtype=np.float64)
        for j, (kind, *columns) in enumerate(ENGINEERED_FEATURES.values()):
            values = [frame[c].to_numpy(dtype=np.float64) for c in columns]
            if kind == "raw":
                out[:, j] = values[0]
            elif kind == "log":
                out[:, j] = np.log(np.maximum(values[0], 1e-9))
            else:  # log_ratio
                out[:, j] = np.log(np.maximum(values[0], 1e-9) / np.maximum(values[1], 1e-9))
        return out

    def get_feature_names_out(self, input_features=None):
        return np.asarray(ENGINEERED_COLUMNS, dtype=object)


class ClusterSimilarity(TransformerMixin, BaseEstimator):
    """Kernel similarity of (latitude, longitude) to k-means cluster centres fit on train.

    ``kernel="biweight"`` (default): ``max(1 - gamma * d² / 2, 0)²``, the quartic (Tukey biweight)
    kernel with radius ``sqrt(2 / gamma)``; ``kernel="gaussian"``: ``exp(-gamma * d²)``. Both have
    the same curvature at a centre; ``d`` is the distance in degrees.

    Fitted state is only ``cluster_centers_`` (k × 2 array, degrees; a k-means run, seeded) — the
    KMeans object itself is not kept, so the persisted transformer holds plain arrays.
    """

    def __init__(
        self,
        n_clusters: int = DEFAULT_N_CLUSTERS,
        gamma: float = DEFAULT_GAMMA,
        n_init: int = DEFAULT_KMEANS_INIT,
        random_state: int = DEFAULT_RANDOM_STATE,
        kernel: str = DEFAULT_KERNEL,
    ):
        self.n_clusters = n_clusters
        self.gamma = gamma
        self.n_init = n_init
        self.random_state = random_state
        self.kernel = kernel

    def fit(self, X, y=None):
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, not {self.kernel!r}")
        points = _as_frame(X, GEO_COLUMNS).to_numpy(dtype=np.float64)
        kmeans = KMeans(n_clusters=self.n_clusters, n_init=self.n_init, random_state=self.random_state).fit(points)
        # Sort the centres (by latitude, then longitude) so their order is canonical, not k-means's.
        centres = kmeans.cluster_centers_
        self.cluster_centers_ = centres[np.lexsort((centres[:, 1], centres[:, 0]))]
        self.n_features_in_ = 2
        self.feature_names_in_ = np.asarray(GEO_COLUMNS, dtype=object)
        return self

    def transform(self, X):
        check_is_fitted(self, "cluster_centers_")
        points = _as_frame(X, GEO_COLUMNS).to_numpy(dtype=np.float64)
        squared = ((points[:, None, :] - self.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
        if cluster_kernel(self) == "biweight":
            return np.maximum(1.0 - 0.5 * self.gamma * squared, 0.0) ** 2
        return np.exp(-self.gamma * squared)

    def get_feature_names_out(self, input_features=None):
        return np.asarray([f"cluster_{i}_similarity" for i in range(self.n_clusters)], dtype=object)


def cluster_kernel(geo: ClusterSimilarity) -> str:
    """The kernel of a fitted ClusterSimilarity; transformers saved before ``kernel`` existed are Gaussian."""
    return getattr(geo, "kernel", "gaussian")


def _as_frame(X, columns: tuple[str, ...]) -> pd.DataFrame:
    """Accept a DataFrame with (at least) ``columns`` or an array with exactly those columns."""
    if isinstance(X, pd.DataFrame):
        return X[list(columns)]
    array = np.asarray(X, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(columns):
        raise ValueError(f"expected {len(columns)} columns {columns}, got shape {array.shape}")
    return pd.DataFrame(array, columns=list(columns))


def build_transformer(
    n_clusters: int = DEFAULT_N_CLUSTERS,
    gamma: float = DEFAULT_GAMMA,
    n_init: int = DEFAULT_KMEANS_INIT,
    random_state: int = DEFAULT_RANDOM_STATE,
    kernel: str = DEFAULT_KERNEL,
    neighbours: int = DEFAULT_NEIGHBOURS,
) -> Pipeline:
    """The unfitted preprocessing pipeline (see the module docstring). Fit it on the train split only.

    ``neighbours``: k of the neighbourhood-price block; 0 leaves the block out.
    """
    impute = ColumnTransformer(
        [
            ("median", SimpleImputer(strategy="median"), list(NUMERIC_FEATURE_COLUMNS)),
            ("category", "passthrough", [CATEGORICAL_COLUMN]),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    features = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline([("engineer", DistrictFeatures()), ("scale", StandardScaler())]),
                list(NUMERIC_FEATURE_COLUMNS),
            ),
            ("geo", ClusterSimilarity(n_clusters, gamma, n_init, random_state, kernel), list(GEO_COLUMNS)),
            (
                "category",
                OneHotEncoder(
                    categories=[list(OCEAN_PROXIMITY_CATEGORIES)], handle_unknown="ignore", sparse_output=False
                ),
                [CATEGORICAL_COLUMN],
            ),
            *(
                [("neighbourhood", Pipeline([("prices", NeighbourhoodPrices(neighbours)), ("scale", StandardScaler())]),
                  list(NEIGHBOURHOOD_INPUTS))]
                if neighbours
                else []
            ),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return Pipeline([("impute", impute), ("features", features)])


def fit_transformer(train: pd.DataFrame, **kwargs) -> Pipeline:
    """:func:`build_transformer` fit on ``train``'s feature columns (and target, for the neighbourhood block)."""
    return build_transformer(**kwargs).fit(train[list(FEATURE_COLUMNS)], train[TARGET_COLUMN].to_numpy(np.float64))


def neighbourhood_step(transformer: Pipeline) -> Pipeline | None:
    """The fitted neighbourhood block (``prices`` → ``scale``), or None for a transformer without it."""
    named = transformer["features"].named_transformers_
    return named["neighbourhood"] if "neighbourhood" in named else None


def transform(transformer: Pipeline, frame: pd.DataFrame, out_of_fold: bool = False) -> np.ndarray:
    """The model matrix (``float32``, the dtype the network uses) for ``frame``'s feature columns.

    ``out_of_fold=True`` is for the rows the transformer was fit on (in that order): their
    neighbourhood columns leave each row's own label out (:mod:`housing_platform.core.neighbourhood`).
    """
    matrix = np.asarray(transformer.transform(frame[list(FEATURE_COLUMNS)]), dtype=np.float64)
    step = neighbourhood_step(transformer) if out_of_fold else None
    if step is not None:
        imputed = transformer["impute"].transform(frame[list(FEATURE_COLUMNS)])
        matrix[:, -len(step["prices"].columns()):] = step["scale"].transform(step["prices"].out_of_fold(imputed))
    return matrix.astype(np.float32)


def feature_names(transformer: Pipeline) -> list[str]:
    """Output column names, in order."""
    return [str(name) for name in transformer["features"].get_feature_names_out()]


def fitted_statistics(transformer: Pipeline) -> dict:
    """Every fitted number of the transform as plain JSON-able Python (for metadata and a numpy port)."""
    check_is_fitted(transformer)
    imputer = transformer["impute"].named_transformers_["median"]
    scaler = transformer["features"].named_transformers_["numeric"]["scale"]
    geo = transformer["features"].named_transformers_["geo"]
    onehot = transformer["features"].named_transformers_["category"]
    return {
        "input_columns": list(FEATURE_COLUMNS),
        "imputer_medians": dict(zip(NUMERIC_FEATURE_COLUMNS, map(float, imputer.statistics_))),
        "engineered_features": {name: list(spec) for name, spec in ENGINEERED_FEATURES.items()},
        "scaler_means": dict(zip(ENGINEERED_COLUMNS, map(float, scaler.mean_))),
        "scaler_scales": dict(zip(ENGINEERED_COLUMNS, map(float, scaler.scale_))),
        "cluster_centers_lat_lon": [[float(a), float(b)] for a, b in geo.cluster_centers_],
        "cluster_gamma": float(geo.gamma),
        "cluster_kernel": cluster_kernel(geo),
        "ocean_proximity_categories": [str(c) for c in onehot.categories_[0]],
        **_neighbourhood_statistics(transformer),
        "output_features": feature_names(transformer),
        "n_samples_fit": int(scaler.n_samples_seen_),
    }


def _neighbourhood_statistics(transformer: Pipeline) -> dict:
    step = neighbourhood_step(transformer)
    if step is None:
        return {"neighbourhood_neighbours": 0}
    return {
        "neighbourhood_neighbours": int(step["prices"].n_neighbours),
        "neighbourhood_training_rows": int(len(step["prices"].coordinates_)),
        "neighbourhood_weighted": step["prices"].weighted(),
        "neighbourhood_scaler_means": dict(zip(step["prices"].columns(), map(float, step["scale"].mean_))),
        "neighbourhood_scaler_scales": dict(zip(step["prices"].columns(), map(float, step["scale"].scale_))),
    }


# Types a saved transformer may contain beyond skops' defaults, exactly; load refuses anything else.
# (skops already trusts scikit-learn's own estimators and plain numpy arrays/scalars.)
TRUSTED_TYPES = [
    f"{__name__}.ClusterSimilarity",
    f"{__name__}.DistrictFeatures",
    "housing_platform.core.neighbourhood.NeighbourhoodPrices",
    "numpy.dtype",  # SimpleImputer keeps the dtype it was fit on (`_fit_dtype`, `_fill_dtype`)
]


def save_transformer(transformer: Pipeline, path: str | Path) -> Path:
    """Write the fitted transformer with skops (a zip of JSON + arrays; never pickle)."""
    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(transformer, path)
    return path


def load_transformer(path: str | Path) -> Pipeline:
    """Load a transformer written by :func:`save_transformer`, trusting only :data:`TRUSTED_TYPES`."""
    import skops.io as sio

    return sio.load(Path(path), trusted=list(TRUSTED_TYPES))
