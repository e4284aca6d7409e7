"""The textbook baseline: *Hands-On Machine Learning* (3rd ed., ch. 2)'s California housing pipeline.

The model every data scientist has read, rebuilt as the book writes it, so the evaluation report can
say whether the platform's network beats it on the same rows:

* ratio features ``total_bedrooms / total_rooms``, ``total_rooms / households``,
  ``population / households`` (median-imputed, then standardised);
* ``log`` of the skewed columns ``total_bedrooms``, ``total_rooms``, ``population``, ``households``,
  ``median_income`` (median-imputed, logged, standardised);
* the book's ``ClusterSimilarity``: RBF similarity (``exp(-gamma * d²)``, ``gamma = 1``) of
  (latitude, longitude) to the centres of a seeded k-means with **45** clusters (the book's
  randomized-search winner), ``n_init=10`` as in the book;
* ``ocean_proximity`` one-hot (most-frequent imputation, unknown categories ignored);
* the rest (``housing_median_age``) median-imputed and standardised;
* ``RandomForestRegressor(n_estimators=100, max_features=9, random_state=42)``.

It is fit on the rows the network learns from (train + validation: the network sees validation
through early stopping) and scored on the same test rows. It is an evaluation baseline only: it is
never persisted or served, so the book's ``FunctionTransformer`` formulas are plain functions here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS, TARGET_COLUMN

TEXTBOOK_BASELINE = "textbook_random_forest"
TEXTBOOK_N_CLUSTERS = 45
TEXTBOOK_GAMMA = 1.0
TEXTBOOK_N_ESTIMATORS = 100
TEXTBOOK_MAX_FEATURES = 9
TEXTBOOK_RANDOM_STATE = 42
TEXTBOOK_KMEANS_INIT = 10  # the book passes n_init=10 explicitly


class BookClusterSimilarity(TransformerMixin, BaseEstimator):
    """The book's ``ClusterSimilarity``: ``rbf_kernel`` of each point to seeded k-means centres."""

    def __init__(self, n_clusters: int = 10, gamma: float = 1.0, random_state: int | None = None):
        self.n_clusters = n_clusters
        self.gamma = gamma
        self.random_state = random_state

    def fit(self, X, y=None, sample_weight=None):
        self.kmeans_ = KMeans(self.n_clusters, n_init=TEXTBOOK_KMEANS_INIT, random_state=self.random_state)
        self.kmeans_.fit(X, sample_weight=sample_weight)
        return self

    def transform(self, X):
        return rbf_kernel(X, self.kmeans_.cluster_centers_, gamma=self.gamma)

    def get_feature_names_out(self, names=None):
        return [f"Cluster {i} similarity" for i in range(self.n_clusters)]


def _column_ratio(X):
    return X[:, [0]] / X[:, [1]]


def _ratio_name(function_transformer, feature_names_in):
    return ["ratio"]


def _ratio_pipeline() -> Pipeline:
    return make_pipeline(
        SimpleImputer(strategy="median"),
        FunctionTransformer(_column_ratio, feature_names_out=_ratio_name),
        StandardScaler(),
    )


def textbook_pipeline(random_state: int = TEXTBOOK_RANDOM_STATE) -> Pipeline:
    """The book's ``preprocessing`` followed by its random forest (unfitted)."""
    log_pipeline = make_pipeline(
        SimpleImputer(strategy="median"), FunctionTransformer(np.log, feature_names_out="one-to-one"), StandardScaler()
    )
    categorical = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
    preprocessing = ColumnTransformer(
        [
            ("bedrooms", _ratio_pipeline(), ["total_bedrooms", "total_rooms"]),
            ("rooms_per_house", _ratio_pipeline(), ["total_rooms", "households"]),
            ("people_per_house", _ratio_pipeline(), ["population", "households"]),
            ("log", log_pipeline, ["total_bedrooms", "total_rooms", "population", "households", "median_income"]),
            ("geo", BookClusterSimilarity(TEXTBOOK_N_CLUSTERS, TEXTBOOK_GAMMA, random_state), ["latitude", "longitude"]),
            ("cat", categorical, [CATEGORICAL_COLUMN]),
        ],
        remainder=make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
    )
    # n_jobs=-1: each tree draws from its own seed, so the forest is the same with any number of workers.
    forest = RandomForestRegressor(
        n_estimators=TEXTBOOK_N_ESTIMATORS, max_features=TEXTBOOK_MAX_FEATURES, random_state=random_state, n_jobs=-1
    )
    return Pipeline([("preprocessing", preprocessing), ("random_forest", forest)])


# The forest costs ~7 s on 2 cores for 16k rows and depends on the rows alone (seeded): a process that
# evaluates several candidates on the same data (a retraining loop, the test suite) fits it once.
_CACHE_SIZE = 4
_cache: dict[str, np.ndarray] = {}


def _rows_key(learn: pd.DataFrame, test: pd.DataFrame) -> str:
    import hashlib

    digest = hashlib.sha256()
    for frame in (learn[[*FEATURE_COLUMNS, TARGET_COLUMN]], test[list(FEATURE_COLUMNS)]):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def textbook_predictions(learn: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Test predictions (dollars) of :func:`textbook_pipeline` fit on ``learn`` (rows with the target).

    Memoised per process on the content of both frames (a few recent ones), so the same rows are fit once.
    """
    key = _rows_key(learn, test)
    if key not in _cache:
        model = textbook_pipeline().fit(learn[list(FEATURE_COLUMNS)], learn[TARGET_COLUMN].to_numpy(dtype=np.float64))
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = model.predict(test[list(FEATURE_COLUMNS)]).astype(np.float64)
    return _cache[key].copy()
