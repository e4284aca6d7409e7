"""The tiny registered models load from their own registry, whatever MLflow's process-wide URI says."""

from __future__ import annotations

import mlflow
import numpy as np

from housing_platform.core.schema import FEATURE_COLUMNS


def test_a_version_loads_from_its_own_registry_when_mlflow_points_elsewhere(models, champion_pyfunc, tmp_path):
    rows = models.test.head(20)[list(FEATURE_COLUMNS)]
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    another = f"sqlite:///{tmp_path / 'another_registry.db'}"  # knows no such model
    mlflow.set_tracking_uri(another)
    mlflow.set_registry_uri(another)
    try:
        models.sources.pop(models.versions[0], None)  # fetch again, under the foreign URIs
        loaded = models.load_pyfunc(models.versions[0])
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    # The same files, hence bit-identical predictions from the same process.
    np.testing.assert_array_equal(loaded.predict(rows), champion_pyfunc.predict(rows))
