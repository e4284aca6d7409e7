"""Loading a version's fast path: verified against the registered pyfunc, refused when they disagree."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from housing_platform.scoring.errors import SkewError
from housing_platform.scoring.network import DenseLayer
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import SkewCheck, probe_frame, verify_against

pytestmark = pytest.mark.slow


def test_every_version_loads_verified_and_differs(models):
    one, two = (models.scorer(v) for v in models.versions)
    rows = models.test.head(20)
    assert not np.allclose(one.score(rows), two.score(rows))


def test_verify_refuses_a_fast_path_that_disagrees_with_the_pyfunc(champion_pyfunc):
    python_model = champion_pyfunc.unwrap_python_model()
    scorer = FastScorer.from_python_model(python_model)
    last = scorer.layers[-1]
    # Every prediction 1 % too high: ~$2k on a typical row, far beyond float32 rounding.
    tampered = dataclasses.replace(
        scorer, layers=[*scorer.layers[:-1], DenseLayer(last.kernel * 1.01, last.bias * 1.01, last.post, last.folded)]
    )

    check = verify_against(scorer, python_model)
    assert isinstance(check, SkewCheck) and check.passed and check.rows == len(probe_frame(scorer))
    assert check.worst_ratio < 0.1  # the probe rows sit well inside their bound, not at its edge
    with pytest.raises(SkewError, match=r"differs from the registered model .*row (train|total_bedrooms).*: .*error bound of \$"):
        verify_against(tampered, python_model)


def test_the_other_version_is_refused_as_the_registered_model(models, champion_pyfunc):
    """Version 2 (output bias nudged) is a different model: its fast path fails against version 1's pyfunc."""
    with pytest.raises(SkewError, match="rows outside their bound"):
        verify_against(models.scorer(models.versions[1]), champion_pyfunc.unwrap_python_model())
