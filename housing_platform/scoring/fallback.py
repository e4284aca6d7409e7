"""What the server answers with when no model version can be loaded: the heuristic baseline.

The baseline is the evaluation report's simplest comparison model — the median house value per
``ocean_proximity`` on the train split, the overall train median for a category it never saw
(``core/evaluation.py``'s ``median_per_ocean_proximity``; test RMSE about $102k against the network's
$43k, so it is a last resort, not a model). It is fitted at registration, stored with every version as
the model file ``artifacts/fallback_baseline.json`` (so the registry's sha256 record covers it) and,
when a version is promoted, copied into the file store (``<HOUSING_HOME>/server/fallback_baseline.json``,
or ``s3://<bucket>/<prefix>/server/fallback_baseline.json`` in the production profile:
``adapters/fallback_store.py``) where a server that can load no version at all still finds it.

:class:`FallbackScorer` has the part of :class:`~housing_platform.scoring.scorer.FastScorer`'s interface
the server's predict path uses (``category_codes``, ``score_arrays``, ``out_of_range``), so a fallback
answer goes through the same validation, response and capture code, under the model version
:data:`FALLBACK_VERSION` — monitoring never mixes it with a real version's answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from housing_platform.core.schema import CATEGORICAL_COLUMN, TARGET_COLUMN
from housing_platform.scoring.errors import ScoringError

FALLBACK_VERSION = "fallback"  # the model_version of fallback answers, in responses and captures
FALLBACK_KIND = "median_per_ocean_proximity"
FALLBACK_ARTIFACT = "fallback_baseline"  # its key among a version's model artifacts (file fallback_baseline.json)


def fit_fallback_baseline(train: pd.DataFrame) -> dict:
    """The baseline as JSON-ready data: the train median of the target per category and overall."""
    medians = train.groupby(CATEGORICAL_COLUMN)[TARGET_COLUMN].median()
    return {
        "kind": FALLBACK_KIND,
        "medians": {str(category): float(value) for category, value in medians.items()},
        "overall_median": float(train[TARGET_COLUMN].median()),
        "train_rows": len(train),
    }


@dataclass(frozen=True)
class FallbackScorer:
    """Scores rows with a :func:`fit_fallback_baseline` table (one number per category)."""

    medians: dict[str, float]
    overall_median: float
    source: str = ""  # where it was read from, for /ready and the log

    def __post_init__(self) -> None:
        categories = tuple(sorted(self.medians))
        table = np.array([self.medians[c] for c in categories] + [self.overall_median], dtype=np.float64)
        if not np.isfinite(table).all():
            raise ScoringError(f"fallback baseline {self.source}: its medians must be finite numbers")
        object.__setattr__(self, "categories", categories)
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(categories)})
        object.__setattr__(self, "_table", table)

    @classmethod
    def from_dict(cls, value: dict, source: str = "") -> FallbackScorer:
        if value.get("kind") != FALLBACK_KIND:
            raise ScoringError(f"fallback baseline {source}: kind {value.get('kind')!r}, expected {FALLBACK_KIND!r}")
        try:
            medians = {str(k): float(v) for k, v in value["medians"].items()}
            return cls(medians, float(value["overall_median"]), source)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ScoringError(f"fallback baseline {source}: malformed ({type(error).__name__}: {error})") from error

    @classmethod
    def read(cls, path: str | Path) -> FallbackScorer:
        """From a JSON file; :class:`ScoringError` naming the path if it is missing or malformed."""
        path = Path(path)
        try:
            value = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise ScoringError(f"no fallback baseline at {path}") from error
        except (OSError, ValueError) as error:
            raise ScoringError(f"fallback baseline {path}: cannot be read ({type(error).__name__}: {error})") from error
        return cls.from_dict(value, str(path))

    def category_codes(self, values) -> np.ndarray:
        """Row of the table per value: the category's, or the overall median's for an unknown one."""
        unknown = len(self.categories)
        return np.fromiter((self._index.get(v, unknown) for v in values), dtype=np.intp, count=len(values))

    def score_arrays(self, numeric: np.ndarray, codes: np.ndarray, threads: int = 1) -> np.ndarray:
        return self._table[np.asarray(codes, dtype=np.intp)]

    def out_of_range(self, columns, numeric: np.ndarray | None = None) -> list[str]:
        """No training ranges are kept with the baseline: nothing is flagged."""
        n = len(numeric) if numeric is not None else len(columns[CATEGORICAL_COLUMN])
        return [""] * n
