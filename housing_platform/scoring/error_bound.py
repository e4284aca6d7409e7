"""How far the fast path and the registered model may differ on a row: a float32 forward error bound.

Why not a relative tolerance
----------------------------
The registered model computes in float32 (scikit-learn's float64 features are rounded to float32,
then Keras's Dense layers). Its result depends on the order of every sum: oneDNN on or off, the
number of threads, AVX2 vs AVX-512 blocking all change the last bits. A prediction is
``sigma * z + mu`` with ``mu ~ $200k``, so a low prediction is a difference of large terms; a fixed
relative tolerance (the former ``SKEW_RTOL = 1e-5``) therefore fails on some CPU for some row, while
being far looser than needed elsewhere. The bound below depends on the row, not on the CPU.

The bound (per row)
-------------------
Let ``N(x)`` be the network evaluated exactly (real arithmetic) on the exact features ``x`` of a
row. We bound ``|ref - N(x)|`` (the Keras reference, any summation order) and ``|fast - N(x)|`` (the
fast path in its precision); then ``|fast - ref| <= bound_ref + bound_fast`` (:attr:`SkewBound.total`).

* **Dot products** (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002,
  §3.1, eq. 3.5): in floating point with unit roundoff ``u``, *any* summation order (blocked,
  pairwise, FMA, split over threads) gives ``|fl(w^T h + b) - (w^T h + b)| <= gamma_k (|w|^T |h| + |b|)``
  with ``gamma_k = k u / (1 - k u)`` and ``k`` the number of terms plus roundings on the way; we use
  ``k = n + 3`` for ``n`` non-zero weights of the output (a zero weight's product is an exact 0, whose
  addition rounds nothing: the block-diagonal layers of an ensemble, ``core/ensemble.py``, count their block) (bias, the fast path's bias folded into the category rows, and the
  folded output rescaling). ``u = 2^-24`` for float32, ``2^-53`` for float64. Underflow
  (flush-to-zero) adds at most ``2^-126`` per operation: ``k * 2^-126``.
* **Propagation**, layer by layer: an input known to ``e_h`` gives
  ``e_z = |W|^T e_h + gamma_k (|W|^T (|h| + 2 e_h) + |b|)``. ``|h|`` comes from the float64 pass of the
  port itself (``|h| + 2 e_h`` bounds the magnitude of both the exact and the rounded value, since the
  float64 pass is itself within ``e_h`` of the exact one). This costs one matrix product with ``|W|``
  per layer and per bound.
* **Activations** (the ones ``core/model.py`` can build, :data:`LIPSCHITZ`): ``e_a = L e_z`` with ``L``
  the activation's Lipschitz constant (relu, elu, tanh: 1; selu: scale * alpha = 1.7581; gelu:
  1.1290; silu/swish: 1.0999), plus the rounding of its own evaluation in the layer's precision,
  ``8 u (|z| + |a|)`` (a few ulps of a libm-style function, and the cancellation inside gelu/elu
  near zero). ``relu`` and the clip to ``[0, MAX_HOUSE_VALUE]`` are exact with ``L = 1`` (a Keras
  ``ReLU`` with a slope or a threshold, which the model never builds, is bounded too).
* **Output transform** (``core/model.py``): the output Dense gives ``z``; Keras then computes
  ``z * sigma + mu`` with ``sigma`` and ``mu`` *rounded to float32*: ``|sigma| e_z + gamma_3 (|z sigma| + |mu|)``.
  For the log target, ``exp``: ``exp(z + e_z) * expm1(e_z) + 4 u exp(z + 2 e_z)``. The last
  operation rounds the float32 output itself.
* **Inputs**: Keras receives the float64 features rounded to float32, ``u |x| + 2^-126``. The fast
  path in float32 rounds its features the same way and computes the cluster similarities in
  float32: the kernel's argument ``a`` rounded (``u |a|``), then ``exp`` (``4 u``) or a square.
* **The transformer** (``t``): the fast path re-implements scikit-learn's float64 features with the
  same formulas for the engineered columns but a different (expanded) formula for the cluster
  similarities. Both are within ``t`` of the exact features, with ``t`` the float64 rounding of each:
  engineered ``8 eps (|x| + (2 |mean| + 1) / scale)`` (``log``, ratio, standardisation);
  similarity argument ``16 eps (1 + gamma (|p|^2 + |c|^2))`` (coordinates centred on the centres'
  mean), through ``2 sqrt(S) + d`` (biweight) or ``S expm1(d)`` (Gaussian) plus the ``e^-80`` floor
  of the fast path; ``eps = 2^-53``. The neighbourhood-price columns are computed by the same
  function on both paths; only their standardisation may round differently: ``4 eps (|x| + |mean| / scale)``. It enters both bounds as input error, and
  :attr:`SkewBound.features` reports how much of the total it accounts for (nothing visible in
  practice: it is ~1e-9 of the float32 terms).

Every term is an upper bound: the observed differences sit far inside it (the float32 rounding
errors of a sum mostly cancel, ~sqrt(n) u rather than n u), and a wrong weight, a dropped
feature or a wrong scaler moves predictions by dollars to thousands of dollars, far outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from housing_platform.core.schema import NUMERIC_FEATURE_COLUMNS
from housing_platform.scoring.network import DenseLayer, Elementwise
from housing_platform.scoring.scorer import Columns, FastScorer

U32 = 2.0**-24  # unit roundoff of float32
U64 = 2.0**-53  # unit roundoff of float64
TINY32 = 2.0**-126  # smallest normal float32: what flush-to-zero may lose per operation
TINY64 = 2.0**-1022
_SIMILARITY_FLOOR = float(np.exp(-80.0))  # the fast path floors Gaussian similarities here (scorer.py)

# Lipschitz constant of each activation core/model.py can build (Keras names; "silu" is "swish").
LIPSCHITZ = {"linear": 1.0, "relu": 1.0, "elu": 1.0, "tanh": 1.0, "selu": 1.7581, "gelu": 1.1290, "silu": 1.0999}
_ACTIVATION_ULPS = 8.0  # evaluation error of a non-trivial activation, in units of u times (|z| + |a|)
_EXP_ULPS = 4.0  # evaluation error of exp (TensorFlow's float32, numpy's SIMD), in units of u
_CHUNK_ROWS = 8_192  # rows per pass: the three error matrices of a chunk stay ~25 MB


def gamma(k: int | np.ndarray, u: float | np.ndarray) -> np.ndarray:
    """Higham's gamma_k = k u / (1 - k u): the relative error of a k-term sum of products."""
    ku = np.asarray(k, dtype=np.float64) * u
    return ku / (1.0 - ku)


@dataclass(frozen=True)
class SkewBound:
    """Per-row bounds, in dollars, for one set of rows (see the module docstring)."""

    prediction: np.ndarray  # the port's float64 prediction the bound was computed around
    reference: np.ndarray  # |Keras float32 - exact|, any summation order
    fast: np.ndarray  # |fast path in its precision - exact|
    features: np.ndarray  # the part of reference + fast due to the transformer's float64 differences

    @property
    def total(self) -> np.ndarray:
        """How far the fast path and the registered model may differ on each row."""
        return self.reference + self.fast


def skew_bound(scorer: FastScorer, columns: Columns | pd.DataFrame) -> SkewBound:
    """The per-row bound on |fast path - registered model| for ``columns`` (one extra float64 pass)."""
    x = scorer.transform(columns)  # float64, scikit-learn's column order (what the network sees)
    p2 = _centred_points(scorer, columns)
    parts = [_bound_rows(scorer, x[start : start + _CHUNK_ROWS], p2[start : start + _CHUNK_ROWS])
             for start in range(0, len(x), _CHUNK_ROWS)] or [_bound_rows(scorer, x, p2)]
    return SkewBound(*(np.concatenate([getattr(part, f) for part in parts]) for f in SkewBound.__dataclass_fields__))


def _bound_rows(scorer: FastScorer, x: np.ndarray, p2: np.ndarray) -> SkewBound:
    t = _transformer_error(scorer, x, p2)
    rounded_to_32 = U32 * (np.abs(x) + 2.0 * t) + TINY32  # Keras's input: scikit-learn's x (within 2t) in float32
    fast_inputs = t if scorer.precision == "float64" else t + rounded_to_32 + _similarity_error_32(scorer, x)
    # Three bounds propagated at once: the Keras reference, the fast path, the transformer part alone.
    errors = np.stack([t + rounded_to_32, fast_inputs, 2.0 * t])
    n_layers = len(scorer.layers)
    if scorer.precision == "float64":
        fast_u = [U64] * n_layers
    else:  # float32 dense layers, but the output layer stays float64 when there is a hidden one (scorer.py)
        fast_u = [U32] * (n_layers - 1) + [U64] if n_layers > 1 else [U32]
    value = x
    for layer, layer_u in zip(scorer.layers, fast_u):
        u = np.array([U32, layer_u, 0.0])[:, None, None]  # the transformer part: no rounding
        tiny = np.array([TINY32, TINY32 if layer_u == U32 else TINY64, 0.0])[:, None, None]
        value, errors = _dense(layer, value, errors, u, tiny)
    return SkewBound(prediction=value[:, 0], reference=errors[0, :, 0], fast=errors[1, :, 0], features=errors[2, :, 0])


def _dense(layer: DenseLayer, h: np.ndarray, e_h: np.ndarray, u: np.ndarray, tiny: np.ndarray):
    """One Dense layer and its element-wise steps: the float64 value and each bound's error."""
    kernel, bias, steps = unfolded(layer)
    # Terms per output: a zero weight's product is an exact 0 and adding it rounds nothing, so only the
    # non-zero weights count (an ensemble's merged layers are block-diagonal: core/ensemble.py).
    k = np.count_nonzero(kernel, axis=0) + 3
    abs_kernel = np.abs(kernel)
    g = gamma(k, u)
    z = h @ kernel + bias
    e_z = e_h @ abs_kernel + g * ((np.abs(h) + 2.0 * e_h) @ abs_kernel + np.abs(bias)) + k * tiny
    # Keras rounds each Rescaling on its own (3 roundings with its float32 constants); the fast path
    # folded it into this layer's float64 sum, where the offset may pass through all k roundings.
    rescale_terms = np.stack([np.full_like(k, 3), k, np.full_like(k, 3)])[:, None, :]
    for step in steps:
        z, e_z = _elementwise(step, z, e_z, u, rescale_terms)
    return z, e_z


def unfolded(layer: DenseLayer) -> tuple[np.ndarray, np.ndarray, tuple[Elementwise, ...]]:
    """The layer as Keras computes it: the Rescaling layers folded into it become steps again."""
    kernel, bias = layer.kernel, layer.bias
    steps: list[Elementwise] = []
    for scale, offset in reversed(layer.folded):  # (x W + b) s + o: undo the last fold first
        kernel, bias = kernel / scale, (bias - offset) / scale
        steps.insert(0, Elementwise("rescale", scale=scale, offset=offset))
    return kernel, bias, (*steps, *layer.post)


def _elementwise(step: Elementwise, z: np.ndarray, e: np.ndarray, u: np.ndarray, rescale_terms: np.ndarray):
    magnitude = np.abs(z) + 2.0 * e  # bounds |exact| and |rounded| input (see the module docstring)
    if step.kind == "rescale":
        out = z * step.scale + step.offset
        g = gamma(rescale_terms, u)
        return out, abs(step.scale) * e + g * (abs(step.scale) * magnitude + abs(step.offset))
    if step.kind == "exponential":
        out = np.exp(z)
        return out, np.exp(z + e) * np.expm1(e) + _EXP_ULPS * u * np.exp(z + 2.0 * e)
    if step.kind == "relu_layer":
        out = step(z.copy())
        lipschitz = max(1.0, abs(step.negative_slope))
        exact = step.negative_slope == 0.0  # max/min only; a slope multiplies and subtracts (2 roundings)
        rounding = 0.0 if exact else 2.0 * u * lipschitz * (magnitude + abs(step.threshold))
        # A non-zero threshold makes Keras's relu jump by |threshold| there: not Lipschitz within e of it.
        jump = np.where(np.abs(z - step.threshold) <= e, abs(step.threshold), 0.0) if step.threshold else 0.0
        return out, lipschitz * e + rounding + jump
    if step.kind not in LIPSCHITZ:  # a new activation needs its constant here before it can be bounded
        raise ValueError(f"no Lipschitz constant for activation {step.kind!r}")
    out = step(z.copy())
    lipschitz = LIPSCHITZ[step.kind]
    e_out = lipschitz * e
    if step.kind not in ("linear", "relu"):
        e_out = e_out + _ACTIVATION_ULPS * u * (magnitude + np.abs(out) + 2.0 * lipschitz * e)
    return out, e_out


def _centred_points(scorer: FastScorer, columns) -> np.ndarray:
    """|p|^2 per row, p = (latitude, longitude) centred on the centres' mean (as the fast path computes)."""
    if not len(scorer.cluster_centers):
        return np.zeros(len(scorer.numeric_matrix(columns)))
    numeric = scorer.numeric_matrix(columns)
    numeric = np.where(np.isnan(numeric), scorer.imputer_medians, numeric)
    lat, lon = NUMERIC_FEATURE_COLUMNS.index("latitude"), NUMERIC_FEATURE_COLUMNS.index("longitude")
    points = numeric[:, [lat, lon]] - scorer.cluster_centers.mean(axis=0)
    return (points**2).sum(axis=1)


def _transformer_error(scorer: FastScorer, x: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """t: how far each float64 feature (scikit-learn's or the fast path's) may be from the exact one."""
    t = np.zeros_like(x)
    n_eng = len(scorer.scaler_means)
    means = np.abs(np.asarray(scorer.scaler_means, dtype=np.float64))
    scales = np.abs(np.asarray(scorer.scaler_scales, dtype=np.float64))
    # log / ratio then (e - mean) / scale: a few roundings of |e| + |mean| (+1 for the log of a ratio).
    t[:, :n_eng] = 8.0 * U64 * (np.abs(x[:, :n_eng]) + (2.0 * means + 1.0) / scales)
    k = len(scorer.cluster_centers)
    if k:
        c2 = ((scorer.cluster_centers - scorer.cluster_centers.mean(axis=0)) ** 2).sum(axis=1)
        d = 16.0 * U64 * (1.0 + float(scorer.cluster_gamma) * (p2[:, None] + c2[None, :]))  # argument's error
        s = x[:, n_eng : n_eng + k]
        if scorer.cluster_kernel == "biweight":
            t[:, n_eng : n_eng + k] = d * (2.0 * np.sqrt(s) + d) + 2.0 * U64 * s
        else:
            t[:, n_eng : n_eng + k] = s * np.expm1(d) + 2.0 * U64 * s + _SIMILARITY_FLOOR
    m = len(scorer.neighbourhood_means) if scorer.neighbourhood is not None else 0
    if m:  # the same float64 values on both paths, standardised by (v - mean) / scale: two roundings each
        means = np.abs(np.asarray(scorer.neighbourhood_means, dtype=np.float64))
        scales = np.abs(np.asarray(scorer.neighbourhood_scales, dtype=np.float64))
        t[:, -m:] = 4.0 * U64 * (np.abs(x[:, -m:]) + means / scales)
    return t


def _similarity_error_32(scorer: FastScorer, x: np.ndarray) -> np.ndarray:
    """The fast path's float32 similarities: the argument rounded to float32, then exp or a square."""
    out = np.zeros_like(x)
    k = len(scorer.cluster_centers)
    if not k:
        return out
    n_eng = len(scorer.scaler_means)
    s = x[:, n_eng : n_eng + k]
    if scorer.cluster_kernel == "biweight":
        argument = np.sqrt(s)  # max(a, 0) for the rows where the kernel is non-zero; 0 elsewhere
        d = U32 * argument + TINY32
        out[:, n_eng : n_eng + k] = d * (2.0 * argument + d) + U32 * s + TINY32
    else:
        argument = np.maximum(-np.log(np.maximum(s, _SIMILARITY_FLOOR)), 0.0)  # |a| = gamma d^2
        d = U32 * argument + TINY32
        out[:, n_eng : n_eng + k] = s * np.expm1(d) + _EXP_ULPS * U32 * s + TINY32
    return out
