"""Scoring one validated request during a safe rollout: which model answers which row.

* no challenger (or the fallback answers): the champion scores every row, as always;
* ``canary``: rows whose routing bucket (``core/rollout_routing.py``: the ``X-Routing-Key`` header,
  else the row's features) falls below the share are scored by the challenger, the others by the
  champion; the answer names the version per row;
* ``shadow``: the champion scores and answers every row; the challenger's scores of the same rows are
  computed later, with the capture records, off the response path (:func:`shadow_predictions`), for
  the sampled share of requests (``shadow_sample_percent``, drawn at random per request).

Scoring that raises is a :class:`~housing_platform.server.failures.ScoringFailure` naming the version and
its rows (canary: the rows that version was asked to answer); a shadow challenger's failures are handed to
the server's :class:`~housing_platform.server.failures.FailureLog` (``server/failures.py``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np

from housing_platform.adapters.capture.failures import FINITE_PREDICTION, SCORING_ERROR
from housing_platform.core.rollout import CANARY, SHADOW
from housing_platform.core.rollout_routing import challenger_rows, feature_buckets, key_bucket
from housing_platform.server.challenger import ActiveRollout
from housing_platform.server.failures import ScoringFailure
from housing_platform.server.requests import Instances

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoutedScores:
    predictions: np.ndarray
    model_versions: list[str] | None  # canary: per row; None when one version answered every row
    shadow: object | None  # shadow: the challenger's ServedModel, to score the rows after the response
    challenger_rows: int = 0  # canary: rows the challenger answered (counted in /metrics)


def _score(served, instances: Instances, rows: np.ndarray | None = None) -> np.ndarray:
    """``served``'s predictions of the (selected) rows; a :class:`ScoringFailure` of its rows if scoring raises."""
    scorer = served.scorer
    try:
        if rows is None:
            return scorer.score_arrays(instances.numeric, scorer.category_codes(instances.categories))
        categories = [instances.categories[i] for i in np.flatnonzero(rows)]
        return scorer.score_arrays(instances.numeric[rows], scorer.category_codes(categories))
    except Exception as error:  # noqa: BLE001 - the rows were schema-valid: the failure is the version's
        asked = len(instances) if rows is None else int(np.count_nonzero(rows))
        raise ScoringFailure(served.version, asked) from error


def score_routed(instances: Instances, champion, rollout: ActiveRollout | None,
                 routing_key: str | None, shadow_sample_percent: float = 100.0) -> RoutedScores:
    """The predictions the response carries, and what the capture needs to know about who made them."""
    if rollout is None or (rollout.mode == CANARY and rollout.share <= 0):
        return RoutedScores(_score(champion, instances), None, None)
    if rollout.mode == SHADOW:
        sampled = shadow_sample_percent >= 100.0 or random.random() * 100.0 < shadow_sample_percent  # noqa: S311
        return RoutedScores(_score(champion, instances), None, rollout.served if sampled else None)
    n = len(instances)
    if routing_key:
        mask = np.full(n, bool(challenger_rows(np.array([key_bucket(routing_key)]), rollout.share)[0]))
    else:
        mask = challenger_rows(feature_buckets(instances.numeric, instances.categories), rollout.share)
    challenger = rollout.served
    if not mask.any():
        predictions = _score(champion, instances)
    elif mask.all():
        predictions = _score(challenger, instances)
    else:
        predictions = np.empty(n, dtype=np.float64)
        predictions[~mask] = _score(champion, instances, ~mask)
        predictions[mask] = _score(challenger, instances, mask)
    versions = np.where(mask, challenger.version, champion.version).tolist()
    return RoutedScores(predictions, versions, None, int(mask.sum()))


def shadow_predictions(shadow, instances: Instances, failures=None) -> list[float | None]:
    """The challenger's scores of the rows (after the response); nulls where it cannot score them, counted as
    its failures in ``failures`` (a :class:`~housing_platform.server.failures.FailureLog`) when given."""
    try:
        values = _score(shadow, instances)
    except ScoringFailure as failure:  # a shadow failure must never cost the champion's capture
        if failures is not None:
            failures.record(shadow.version, SCORING_ERROR, len(instances), error=failure.__cause__)
        else:
            logger.error("shadow scoring by version %s failed", shadow.version, exc_info=failure.__cause__)
        return [None] * len(instances)
    scored = [float(v) if np.isfinite(v) else None for v in values.tolist()]
    if failures is not None:
        failures.record(shadow.version, FINITE_PREDICTION, sum(v is None for v in scored))
    return scored
