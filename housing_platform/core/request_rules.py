"""The schema's row rules, vectorised: which rows of a request or a batch break which rule.

The rules are read from the schema — :func:`housing_platform.core.schema.column_rules` (nullability,
bounds, allowed categories) and the pandera model's cross-column checks — so the model server's 422
answers and batch scoring's rejected rows accept exactly what training's validator accepts.
:func:`check_rules` judges an (n, 8) numeric matrix and the category column in a few numpy
comparisons; :func:`rejected_rules_per_row` turns its :class:`Violation` list into per-row text.
Plain numpy + pandas.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    NUMERIC_FEATURE_COLUMNS,
    HousingDistricts,
    column_rules,
)


@dataclass(frozen=True)
class Violation:
    """Rows breaking one rule: ``field`` and ``rule`` name it, ``message`` says it to a person."""

    field: str  # a column, or "a, b" for a cross-column rule
    rule: str  # e.g. "not null", "finite", "> 0", "one of [...]", "total_bedrooms <= total_rooms"
    rows: np.ndarray  # positions of the failing rows
    message: str


_CROSS_RULE = re.compile(r"^\s*(\w+)\s*(<=|<|>=|>)\s*(\w+)\s*$")


def _cross_rules() -> tuple[tuple[str, str, str], ...]:
    """The pandera model's dataframe checks, each "a OP b" read from its name (one source of truth)."""
    rules = []
    for check in HousingDistricts.to_schema().checks:
        match = _CROSS_RULE.match(check.name or "")
        if not match:
            raise RuntimeError(
                f"schema check {check.name!r} has no vectorised counterpart in housing_platform.core.request_rules; "
                "name it 'column OP column' or implement it there"
            )
        left, op, right = match.groups()
        if left not in NUMERIC_FEATURE_COLUMNS or right not in NUMERIC_FEATURE_COLUMNS:
            raise RuntimeError(f"schema check {check.name!r} compares columns that are not numeric features")
        rules.append((left, op, right))
    return tuple(rules)


COLUMN_RULES = column_rules()
CROSS_RULES = _cross_rules()


def _bound_rule(rule, which: str) -> tuple[str, float] | None:
    """("op", limit) of a rule's minimum or maximum, e.g. (">", 0.0); None if unbounded."""
    value = getattr(rule, which)
    if value is None:
        return None
    inclusive = getattr(rule, f"{which}_inclusive")
    if which == "minimum":
        return (">=" if inclusive else ">"), value
    return ("<=" if inclusive else "<"), value


def _bound_arrays() -> tuple[np.ndarray, ...]:
    """Per numeric column: lower bound, inclusive?, upper bound, inclusive?, nullable? (±inf: none)."""
    low, low_inclusive, high, high_inclusive, nullable = [], [], [], [], []
    for name in NUMERIC_FEATURE_COLUMNS:
        rule = COLUMN_RULES[name]
        low.append(-math.inf if rule.minimum is None else rule.minimum)
        low_inclusive.append(rule.minimum_inclusive)
        high.append(math.inf if rule.maximum is None else rule.maximum)
        high_inclusive.append(rule.maximum_inclusive)
        nullable.append(rule.nullable)
    return tuple(np.array(a) for a in (low, low_inclusive, high, high_inclusive, nullable))


_LOW, _LOW_INCLUSIVE, _HIGH, _HIGH_INCLUSIVE, _NULLABLE = _bound_arrays()
# The same bounds as inclusive, finite limits: low <= x <= high holds exactly for the values that pass
# (an exclusive bound moves to the next float; an absent one to the largest finite float, so that
# ±inf and NaN fall outside). One pass over the rows decides whether any rule needs a closer look.
_LOW_OK = np.where(_LOW_INCLUSIVE, _LOW, np.nextafter(_LOW, np.inf)).clip(-np.finfo(np.float64).max, None)
_HIGH_OK = np.where(_HIGH_INCLUSIVE, _HIGH, np.nextafter(_HIGH, -np.inf)).clip(None, np.finfo(np.float64).max)
_CROSS_INDEX = tuple(
    (NUMERIC_FEATURE_COLUMNS.index(left), op, NUMERIC_FEATURE_COLUMNS.index(right)) for left, op, right in CROSS_RULES
)
_ALLOWED_CATEGORIES = frozenset(COLUMN_RULES[CATEGORICAL_COLUMN].allowed or ())
# "a OP b" is broken where the opposite comparison holds (False for NaN: a missing value passes).
_BROKEN = {"<=": np.greater, "<": np.greater_equal, ">=": np.less, ">": np.less_equal}


def check_rules(numeric: np.ndarray, categories) -> list[Violation]:
    """Every schema rule the rows break, vectorised.

    ``numeric`` is the (n, 8) float64 matrix of :data:`NUMERIC_FEATURE_COLUMNS` with NaN for a
    missing value; ``categories`` the ``ocean_proximity`` values. Null where the schema forbids it,
    ±inf, a bound, an unknown category and each cross-column rule (a missing value passes a
    cross-column rule, as in the pandera model) give one :class:`Violation` each. All columns are
    checked at once; per-column detail is only worked out when something failed.
    """
    n = len(numeric)
    violations: list[Violation] = []
    with np.errstate(invalid="ignore"):
        inside = (numeric >= _LOW_OK) & (numeric <= _HIGH_OK)
    if not inside.all() and not (inside | (np.isnan(numeric) & _NULLABLE)).all():
        with np.errstate(invalid="ignore"):
            below = np.where(_LOW_INCLUSIVE, numeric < _LOW, numeric <= _LOW)
            above = np.where(_HIGH_INCLUSIVE, numeric > _HIGH, numeric >= _HIGH)
        null = np.isnan(numeric)
        infinite = np.isinf(numeric)
        for j, name in enumerate(NUMERIC_FEATURE_COLUMNS):
            rule = COLUMN_RULES[name]
            if not rule.nullable:
                _add(violations, null[:, j], name, "not null", f"{name} is required (got null)")
            _add(violations, infinite[:, j], name, "finite", f"{name} must be a finite number")
            for which, mask in (("minimum", below[:, j]), ("maximum", above[:, j])):
                bound = _bound_rule(rule, which)
                if bound is not None:
                    op, limit = bound
                    _add(violations, mask, name, f"{op} {limit:g}", f"{name} must be {op} {limit:g}")
    if n <= 64:
        bad = np.array([v not in _ALLOWED_CATEGORIES for v in categories], dtype=bool)
    else:
        bad = ~pd.Series(categories, dtype=object).isin(list(_ALLOWED_CATEGORIES)).to_numpy()
    if bad.any():
        shown = ", ".join(repr(a) for a in COLUMN_RULES[CATEGORICAL_COLUMN].allowed or ())
        _add(violations, bad, CATEGORICAL_COLUMN, f"one of [{shown}]", f"{CATEGORICAL_COLUMN} must be one of {shown}")
    for (left, op, right), (i, _, j) in zip(CROSS_RULES, _CROSS_INDEX):
        with np.errstate(invalid="ignore"):
            broken = _BROKEN[op](numeric[:, i], numeric[:, j])  # NaN on either side compares False: passes
        _add(violations, broken, f"{left}, {right}", f"{left} {op} {right}", f"{left} must be {op} {right}")
    return violations


def _add(violations: list[Violation], mask: np.ndarray, name: str, rule: str, message: str) -> None:
    if mask.any():
        violations.append(Violation(field=name, rule=rule, rows=np.flatnonzero(mask), message=message))


def rejected_rules_per_row(violations: list[Violation], n: int) -> np.ndarray:
    """Per row, "; "-joined ``field rule`` of every rule it breaks ("" for a valid row), as an object array."""
    reasons: dict[int, list[str]] = {}
    for violation in violations:
        text = violation.rule if "," in violation.field else f"{violation.field} {violation.rule}"
        for i in violation.rows.tolist():
            reasons.setdefault(i, []).append(text)
    out = np.full(n, "", dtype=object)
    for i, texts in reasons.items():
        out[i] = "; ".join(texts)
    return out
