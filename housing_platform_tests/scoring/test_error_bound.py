"""The skew bound itself: it covers float32 arithmetic in any summation order, for every network
core/model.py can build, and the transformer's share of it is negligible.

The registered model's exact digits depend on the CPU; these tests compare against the bound, which
does not, so no assertion here depends on a last digit.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest

from housing_platform.core import features
from housing_platform.core.model import TrainingConfig
from housing_platform.scoring.error_bound import U32, gamma, skew_bound, unfolded
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import SkewCheck, check_skew

pytestmark = pytest.mark.slow

SUMMATION_ORDERS = ("blas", "sequential", "reversed", "largest_first")
MODEL_ACTIVATIONS = typing.get_args(TrainingConfig.model_fields["activation"].annotation)


@pytest.fixture(scope="module")
def champion(champion_pyfunc):
    """The champion's python model: its transformer and network, as the fast path reads them."""
    return champion_pyfunc.unwrap_python_model()


def _dot_float32(h: np.ndarray, kernel: np.ndarray, order: str) -> np.ndarray:
    """h @ kernel in float32, summed in the given order (rows in chunks: the products are n x in x out)."""
    if order == "blas":
        return h @ kernel
    out = np.empty((len(h), kernel.shape[1]), dtype=np.float32)
    for start in range(0, len(h), 512):
        terms = h[start : start + 512, :, None] * kernel[None, :, :]  # float32 products, rounded
        if order == "reversed":
            terms = terms[:, ::-1]
        elif order == "largest_first":
            terms = np.take_along_axis(terms, np.argsort(-np.abs(terms), axis=1), axis=1)
        out[start : start + 512] = np.cumsum(terms, axis=1, dtype=np.float32)[:, -1]  # left to right
    return out


def _keras_like_float32(scorer: FastScorer, x32: np.ndarray, order: str) -> np.ndarray:
    """What Keras computes, emulated in numpy float32 with a chosen summation order for every Dense."""
    h = x32
    for layer in scorer.layers:
        kernel, bias, steps = unfolded(layer)
        h = _dot_float32(h, kernel.astype(np.float32), order) + bias.astype(np.float32)
        for step in steps:  # float32 in, float32 out (Rescaling's constants become float32, as in Keras)
            h = np.asarray(step(h.copy()), dtype=np.float32)
    return h[:, 0].astype(np.float64)


def test_gamma_is_highams_constant():
    assert gamma(1, U32) == pytest.approx(U32, rel=1e-6)
    assert gamma(120, U32) == pytest.approx(120 * U32 / (1 - 120 * U32))


def test_the_bound_covers_float32_in_every_summation_order_on_the_whole_test_split(models, champion):
    """Sequential, reversed, largest-first and BLAS sums: each float32 result within the reference's bound.

    Sequential summation of the largest terms first is about the worst order for rounding; the bound
    must hold for it too, since it claims to hold whatever order oneDNN or Eigen choose.
    """
    scorer = FastScorer.from_python_model(champion)
    test = models.test
    bound = skew_bound(scorer, test)
    x32 = features.transform(champion.transformer, test)  # what Keras receives: float64 features rounded
    # bound.prediction is the port's float64 evaluation, itself within bound.fast of the exact value.
    allowed = bound.reference + bound.fast
    worst = {}
    for order in SUMMATION_ORDERS:
        deviation = np.abs(_keras_like_float32(scorer, x32, order) - bound.prediction)
        ratio = deviation / allowed
        assert (ratio <= 1.0).all(), f"{order}: row {ratio.argmax()} at {ratio.max():.3g}x its bound"
        worst[order] = (deviation.max(), ratio.max())
    print("\nfloat32 summation orders vs the exact network: " + "; ".join(
        f"{order} max ${dev:.4f} ({ratio:.2e} of the bound)" for order, (dev, ratio) in worst.items()))


def test_the_transformers_share_of_the_bound_is_negligible(models, champion):
    for precision in ("float64", "float32"):
        bound = skew_bound(FastScorer.from_python_model(champion, precision=precision), models.test)
        assert (bound.features <= 1e-6 * bound.total).all()
        assert (bound.reference > 0).all() and (bound.fast > 0).all()
    # The fast path in float64 adds nothing visible; in float32 about as much as the reference itself.
    float64 = skew_bound(FastScorer.from_python_model(champion), models.test)
    assert (float64.fast <= 1e-6 * float64.reference).all()


@pytest.mark.parametrize("activation", MODEL_ACTIVATIONS)
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_every_activation_and_the_log_target_are_bounded(models, champion, activation, precision):
    """Every activation TrainingConfig allows, with the exp of the log target: Keras within the bound."""
    import keras

    from housing_platform.core import model as keras_model

    transformer = champion.transformer
    n_features = len(features.feature_names(transformer))
    config = TrainingConfig(hidden_units=(32, 16), activation=activation, target_transform="log")
    keras.utils.set_random_seed(11)
    network = keras_model._with_inverse_target(
        keras_model.build_network(n_features, config), n_features, config, 12.0, 0.5
    )
    test = models.test.head(1_500)
    scorer = FastScorer.from_objects(transformer, network, precision=precision)
    x32 = features.transform(transformer, test)
    expected = keras_model.predict(network, x32, config)

    check = check_skew(scorer, test, scorer.score(test), expected)
    assert check.passed, check.describe()
    assert check.worst_ratio < 0.1  # far inside: the bound is not tuned to the edge of what Keras does
    bound = skew_bound(scorer, test)
    for order in ("sequential", "largest_first"):
        deviation = np.abs(_keras_like_float32(scorer, x32, order) - bound.prediction)
        assert (deviation <= bound.reference + bound.fast).all(), order


def test_a_relu_layer_with_slope_and_threshold_is_bounded(models, champion):
    """Keras's ReLU(max_value, negative_slope, threshold): ported and bounded, jump at the threshold included."""
    import keras

    transformer = champion.transformer
    n_features = len(features.feature_names(transformer))
    keras.utils.set_random_seed(3)
    network = keras.Sequential([
        keras.Input(shape=(n_features,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1),
        keras.layers.Rescaling(scale=50_000.0, offset=150_000.0),
        keras.layers.ReLU(max_value=400_000.0, negative_slope=0.1, threshold=100_000.0),
    ])
    test = models.test.head(1_000)
    scorer = FastScorer.from_objects(transformer, network)
    expected = np.asarray(network(features.transform(transformer, test)), dtype=np.float64)[:, 0]

    assert check_skew(scorer, test, scorer.score(test), expected).passed


def test_a_non_finite_bound_accepts_only_equality():
    check = SkewCheck(3, np.array([0.0, 1.0, np.inf]), np.array([np.inf, np.inf, 5.0]),
                      np.zeros(3), np.zeros(3), ("a", "b", "c"))
    assert list(check.ratios) == [0.0, np.inf, np.inf]
    assert not check.passed and check.rows_outside == 2
    assert check.describe().startswith("row b: ")
