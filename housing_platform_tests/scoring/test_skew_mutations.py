"""Mutation tests of the skew contract: a real defect in the fast path falls far outside the bound.

Float32 rounding moves a prediction by cents; the bound allows tens of dollars; a wrong weight, a
dropped feature or a wrong scaler moves predictions by thousands. Each defect must be refused by
``verify_against`` (on the server's probe rows and on the test split) and lie outside the bound by a
large factor on most rows — factors with a wide margin, never a CPU's last digit.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from housing_platform.core.features import ENGINEERED_COLUMNS
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.scoring.errors import SkewError
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import check_skew, verify_against

pytestmark = pytest.mark.slow

MUTATIONS = ("sign_flip_of_one_weight", "dropped_feature", "wrong_scaler", "neighbourhood_of_another_k")


@pytest.fixture(scope="module")
def champion(champion_pyfunc):
    return champion_pyfunc


@pytest.fixture(scope="module")
def reference(models, champion) -> np.ndarray:
    return np.asarray(champion.predict(models.test[list(FEATURE_COLUMNS)]), dtype=np.float64)


def _with_first_kernel(scorer: FastScorer, kernel: np.ndarray) -> FastScorer:
    first = scorer.layers[0]
    return dataclasses.replace(scorer, layers=[dataclasses.replace(first, kernel=kernel), *scorer.layers[1:]])


def mutate(scorer: FastScorer, mutation: str, frame) -> FastScorer:
    """The fast path with one defect of the kind a port (or a packaging step) could introduce."""
    n_engineered = len(ENGINEERED_COLUMNS)
    kernel = scorer.layers[0].kernel.copy()
    if mutation == "sign_flip_of_one_weight":
        # The first-layer weight that matters most on this data: |w| x mean |feature| over rows where
        # its unit is active (a weight of an inactive ReLU unit changes nothing, on any CPU).
        x = scorer.transform(frame)
        active = (x @ scorer.layers[0].kernel + scorer.layers[0].bias) > 0
        influence = np.abs(kernel[:n_engineered]) * (np.abs(x[:, :n_engineered]).T @ active) / len(x)
        feature, unit = np.unravel_index(influence.argmax(), influence.shape)
        kernel[feature, unit] *= -1.0
        return _with_first_kernel(scorer, kernel)
    if mutation == "dropped_feature":  # the model matrix's median_income column zeroed
        kernel[ENGINEERED_COLUMNS.index("median_income")] = 0.0
        return _with_first_kernel(scorer, kernel)
    if mutation == "wrong_scaler":  # housing_median_age standardised with its mean shifted by one std
        means = np.asarray(scorer.scaler_means, dtype=np.float64).copy()
        j = ENGINEERED_COLUMNS.index("housing_median_age")
        means[j] += np.asarray(scorer.scaler_scales, dtype=np.float64)[j]
        return dataclasses.replace(scorer, scaler_means=means)
    if mutation == "neighbourhood_of_another_k":  # the neighbourhood prices over the 5 nearest, not the version's k
        prices = copy.copy(scorer.neighbourhood)
        prices.n_neighbours = prices.n_nearest = 5
        return dataclasses.replace(scorer, neighbourhood=prices)
    raise ValueError(mutation)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_real_defect_falls_far_outside_the_bound_and_is_refused(models, champion, reference, mutation, precision):
    python_model = champion.unwrap_python_model()
    scorer = FastScorer.from_python_model(python_model, precision=precision)
    test = models.test
    assert check_skew(scorer, test, scorer.score(test), reference).passed  # the unmutated port is inside
    mutant = mutate(scorer, mutation, test)

    check = check_skew(mutant, test, mutant.score(test), reference)

    ratios = check.ratios
    far_outside = float(np.mean(ratios > 10.0))
    print(
        f"\n[{mutation}, {precision}] outside the bound on {check.rows_outside:,} of {check.rows:,} rows, "
        f">10x on {far_outside:.1%}; deviation/bound median {np.median(ratios):.3g}, max {ratios.max():.3g}; "
        f"median deviation ${np.median(check.deviations):,.0f} vs median bound ${np.median(check.bounds):,.2f}"
    )
    # Observed on the tiny model (AVX-512): 58-99 % of rows outside; medians 80-330x. The margins
    # below are wide so that a differently trained tiny model (another CPU's training) still passes.
    # One weight of one ensemble member moves the averaged prediction by a third of what it moves its
    # member (core/ensemble.py; 3 members by default): observed 83-89% of rows outside, >10x on 22%
    # (float32) to 51% (float64), medians 5-10x; its margins are lower by about that factor.
    weak = mutation == "sign_flip_of_one_weight"
    assert check.rows_outside >= 0.5 * check.rows
    assert far_outside >= (0.1 if weak else 0.4)
    assert np.quantile(ratios, 0.75) >= (5.0 if weak else 20.0)
    with pytest.raises(SkewError, match="outside their bound"):
        verify_against(mutant, python_model)  # the server's load check, on its probe rows
    with pytest.raises(SkewError, match=r"row \d+: fast path .* error bound of \$"):
        verify_against(mutant, python_model, test)
