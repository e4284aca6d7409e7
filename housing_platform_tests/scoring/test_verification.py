"""Loading a version's fast path: verified against the registered pyfunc, refused when they disagree."""

from __future__ import annotations

import numpy as np
import pytest

from housing_platform.devtools.tiny_models import RegisteredModels, registered_models
from housing_platform.scoring.errors import SkewError
from housing_platform.scoring.network import DenseLayer
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import SKEW_RTOL, verify_against

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> RegisteredModels:
    return registered_models(tmp_path_factory)


@pytest.fixture(scope="module")
def champion_pyfunc(models: RegisteredModels):
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{models.model_name}/{models.versions[0]}")


def test_every_version_loads_verified_and_differs(models):
    one, two = (models.scorer(v) for v in models.versions)
    rows = models.test.head(20)
    assert not np.allclose(one.score(rows), two.score(rows))


def test_verify_refuses_a_fast_path_that_disagrees_with_the_pyfunc(champion_pyfunc):
    python_model = champion_pyfunc.unwrap_python_model()
    scorer = FastScorer.from_python_model(python_model)
    last = scorer.layers[-1]
    tampered = FastScorer(
        **{
            **{f: getattr(scorer, f) for f in ("imputer_medians", "scaler_means", "scaler_scales",
                                               "cluster_centers", "cluster_gamma", "categories", "feature_ranges",
                                               "cluster_kernel")},
            "layers": [*scorer.layers[:-1], DenseLayer(last.kernel * 1.001, last.bias * 1.001, last.post)],
        }
    )

    assert verify_against(scorer, python_model) <= SKEW_RTOL
    with pytest.raises(SkewError, match="differs from the registered model"):
        verify_against(tampered, python_model)
