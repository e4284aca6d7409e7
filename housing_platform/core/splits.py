"""Deterministic train / validation / test split by a stable hash of each district's features.

TFX-style hash buckets: every row is hashed from its *identity* (the values of the feature columns,
never the target) into one of :data:`TOTAL_BUCKETS` buckets, and the bucket alone decides its split:

* buckets ``[0, 20)`` → ``"test"`` (20 % of rows),
* buckets ``[20, 28)`` → ``"validation"`` (8 % of rows = 10 % of the non-test rows; used for early
  stopping, so it is part of "train" in the train/test sense and never touches the test set),
* buckets ``[28, 100)`` → ``"train"``.

Consequences: a row's split depends on nothing but its own feature values, so appending rows (a
retraining with more data) never moves an old row between train and test, row order and the index
are irrelevant, and exact duplicates always land in the same split (no leakage through duplicates).
A row whose feature values are *corrected* is a different row and may move.

The hash (chosen over ``hash()``, ``hashlib`` per row and ``pd.util.hash_pandas_object``):

1. Canonicalise each numeric feature: ``float64``, rounded to 6 decimals (the equivalent of fixed
   float formatting, so ``5``, ``5.0`` and ``5.0000000001`` are the same value), ``-0.0`` → ``0.0``,
   then its IEEE-754 bit pattern as ``uint64``; a missing value maps to a fixed sentinel.
2. Canonicalise the category as CRC-32 of its UTF-8 text (computed once per distinct value).
3. Fold the columns, in :data:`FEATURE_COLUMNS` order, into one ``uint64`` with the SplitMix64
   finaliser (a published bijective mixer: fixed constants, wrap-around ``uint64`` arithmetic).

It is pure numpy, so 1M rows hash in well under a second; it depends on no process state (unlike
``hash()``, salted per process) and on no library internals (``hash_pandas_object`` is deterministic
too, but its algorithm is a pandas implementation detail and it hashes dtype-dependent bytes: the int
``5`` and the float ``5.0`` differ). It can be re-implemented in any language from this docstring;
``housing_platform_tests/test_splits.py`` pins golden bucket values so an accidental change fails.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS

TOTAL_BUCKETS = 100
TEST_BUCKETS = 20  # buckets [0, 20) → test
VALIDATION_BUCKETS = 8  # buckets [20, 28) → validation (10 % of the non-test rows)
SPLIT_COLUMN = "split"
SPLIT_NAMES = ("train", "validation", "test")
DECIMALS = 6  # numeric features are compared at this precision

_SEED = np.uint64(0x486F7573696E6721)  # "Housing!"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MISSING = np.uint64(0x7FF8DEADBEEF0001)  # sentinel for a missing value (any column)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser, element-wise on a ``uint64`` array (arithmetic wraps mod 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _numeric_codes(values: pd.Series) -> np.ndarray:
    numbers = np.round(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan), DECIMALS)
    numbers = numbers + 0.0  # -0.0 + 0.0 == +0.0: one bit pattern for zero
    codes = numbers.view(np.uint64).copy()
    codes[np.isnan(numbers)] = _MISSING
    return codes


def _category_codes(values: pd.Series) -> np.ndarray:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([zlib.crc32(str(u).encode("utf-8")) for u in uniques] + [int(_MISSING)], dtype=np.uint64)
    return table[codes]  # code -1 (missing) picks the sentinel at the end


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A stable ``uint64`` hash per row of the feature columns (the target and extra columns are ignored)."""
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"cannot hash rows: feature columns missing: {missing}")
    state = np.full(len(frame), _SEED, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for position, column in enumerate(FEATURE_COLUMNS, start=1):
            codes = _category_codes(frame[column]) if column == CATEGORICAL_COLUMN else _numeric_codes(frame[column])
            state = _splitmix64(state ^ _splitmix64(codes + np.uint64(position) * _GOLDEN))
    return state


def hash_buckets(frame: pd.DataFrame, total_buckets: int = TOTAL_BUCKETS) -> np.ndarray:
    """Each row's bucket in ``[0, total_buckets)``."""
    return (row_hashes(frame) % np.uint64(total_buckets)).astype(np.int64)


def assign_split(
    frame: pd.DataFrame,
    test_buckets: int = TEST_BUCKETS,
    validation_buckets: int = VALIDATION_BUCKETS,
    total_buckets: int = TOTAL_BUCKETS,
) -> pd.Series:
    """``"train"``, ``"validation"`` or ``"test"`` per row, aligned with ``frame.index``."""
    if not (0 < test_buckets and 0 <= validation_buckets and test_buckets + validation_buckets < total_buckets):
        raise ValueError("need 0 < test_buckets, 0 <= validation_buckets, test + validation < total_buckets")
    buckets = hash_buckets(frame, total_buckets)
    which = (buckets >= test_buckets).astype(np.int8) + (buckets >= test_buckets + validation_buckets)
    labels = np.array(["test", "validation", "train"], dtype=object)[which]
    return pd.Series(labels, index=frame.index, name=SPLIT_COLUMN, dtype=object)


@dataclass(frozen=True)
class Splits:
    """The three parts of a frame; each keeps all its columns and gets a fresh 0..n-1 index."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def split_frame(
    frame: pd.DataFrame,
    test_buckets: int = TEST_BUCKETS,
    validation_buckets: int = VALIDATION_BUCKETS,
    total_buckets: int = TOTAL_BUCKETS,
) -> Splits:
    """Split ``frame`` with :func:`assign_split`; rows keep their relative order within each part."""
    labels = assign_split(frame, test_buckets, validation_buckets, total_buckets).to_numpy()
    parts = {name: frame.loc[labels == name].reset_index(drop=True) for name in SPLIT_NAMES}
    return Splits(**parts)
