"""The noise floor of a drift distance: how far two samples of one distribution lie apart by chance.

A distance between two finite samples of one distribution is not zero, and a fixed threshold would
alarm on small days on noise alone. :func:`noise_floors` estimates, per column, a high quantile of
that distance at the current sample size by splitting the reference at random (seeded), for the two
distances the drift report uses with a threshold: normed Wasserstein (numeric columns) and
Jensen-Shannon (the categorical column). ``drift.py`` raises each column's threshold to its floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

_DRAWS_PER_CHUNK = 50  # bounds the noise-floor matrices to 50 x reference rows

# (is the column categorical?, method) -> the distance whose noise floor is known
FLOOR_KINDS = {(False, "wasserstein"): "wasserstein", (True, "jensenshannon"): "jensenshannon"}


@dataclass
class _FloorColumn:
    """One column's reference values, prepared for the split draws of :func:`noise_floors`."""

    kind: str
    valid: np.ndarray  # reference rows where the column is not null
    k: int  # values in the part standing for the current sample
    rest: int  # values in the other part
    scale: float
    order: np.ndarray | None = None  # wasserstein: the sort order of the valid values
    sorted_values: np.ndarray | None = None
    one_hot: np.ndarray | None = None  # jensenshannon: valid rows x categories
    scores: list[np.ndarray] = field(default_factory=list)


def noise_floors(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], *, seed: int, draws: int, quantile: float
) -> dict[str, float]:
    """Per column, the ``quantile`` of its distance between ``n`` reference rows and the rest.

    Each draw splits the reference's non-null values at random into a part of ``k = min(n, m // 2)``
    values (standing in for the current sample of ``n`` non-null values) and the other ``m - k`` (the
    reference). When ``n > k`` the quantile is scaled by the ``sqrt(1/n + 1/m)`` law of a two-sample
    distance. All columns share the draws (one seeded random key per reference row and draw), which is
    cheaper and gives columns with the same distribution up to scale (``median_income`` and a linear
    prediction) the same floor.

    Wasserstein: with both parts taken from one sorted array, W1 is the sum over the gaps between
    consecutive values of ``|F_part - F_rest| * gap``, so a chunk of draws is one cumulative sum; it is
    normed by the standard deviation of the rest, as Evidently norms by the reference's.
    Jensen-Shannon: between the category frequencies of the two parts, as Evidently computes it.
    """
    columns: dict[str, _FloorColumn] = {}
    for column, kind in kinds.items():
        values = reference[column]
        valid = values.notna().to_numpy()
        m, n = int(valid.sum()), int(current[column].notna().sum())
        k = min(n, m // 2)
        if k < 1:
            continue
        prepared = _FloorColumn(kind, valid, k, m - k, float(np.sqrt((1 / n + 1 / m) / (1 / k + 1 / (m - k)))))
        if kind == "wasserstein":
            raw = values.to_numpy(dtype="float64")[valid]
            prepared.order = np.argsort(raw, kind="stable")
            prepared.sorted_values = raw[prepared.order]
        else:
            codes, categories = pd.factorize(values[valid])
            prepared.one_hot = np.eye(len(categories))[codes]
        columns[column] = prepared

    rng = np.random.default_rng([seed, 2])
    for start in range(0, draws, _DRAWS_PER_CHUNK):
        keys = rng.random((min(_DRAWS_PER_CHUNK, draws - start), len(reference)))
        complete_parts: dict[int, np.ndarray] = {}  # k -> split of all rows, shared by columns without nulls
        for c in columns.values():
            if c.valid.all():
                if c.k not in complete_parts:
                    complete_parts[c.k] = _smallest(keys, c.k)
                in_part = complete_parts[c.k]
            else:
                in_part = _smallest(keys[:, c.valid], c.k)
            if c.kind == "wasserstein":
                c.scores.append(_wasserstein_draws(in_part[:, c.order], c.sorted_values, c.k, c.rest))
            else:
                counts = in_part @ c.one_hot
                c.scores.append(jensenshannon((c.one_hot.sum(axis=0) - counts) / c.rest, counts / c.k, axis=1))
    return {
        column: float(np.quantile(np.concatenate(c.scores), quantile) * c.scale)
        for column, c in columns.items()
    }


def _smallest(keys: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``keys``, a mask of its ``k`` smallest entries: a uniformly random k-subset per draw."""
    return keys <= np.partition(keys, k - 1, axis=1)[:, k - 1 : k]


def _wasserstein_draws(in_part: np.ndarray, x: np.ndarray, k: int, rest: int) -> np.ndarray:
    """Normed W1 between the part and the rest of sorted ``x``, for each draw (row) of ``in_part``."""
    below = np.cumsum(in_part, axis=1)[:, :-1]  # part values at or below each gap
    steps = np.arange(1, len(x))
    distance = (np.abs(below / k - (steps - below) / rest) * np.diff(x)).sum(axis=1)
    rest_sum, rest_squares = x.sum() - in_part @ x, (x * x).sum() - in_part @ (x * x)
    rest_std = np.sqrt(np.maximum(rest_squares / rest - (rest_sum / rest) ** 2, 0.0))
    return distance / np.maximum(rest_std, 0.001)  # Evidently's guard against a zero std
